// fetch/: assets from origin into the CAS, for the Remote Asset API: what is known by URI and
// checksum, downloads checked against their checksum, pushed associations.
export { FetchFailure, Fetcher, MAX_FETCH_TIMEOUT_MS, type FetchRequest, type Fetched, type PushRequest, type Qualifier } from "./fetcher";
export { parseSri, sriOf } from "./sri";
export { MAX_SERVICE_DOWNLOADS, directDownload, downloadThrough, serveDownloads, type Download, type DownloadService } from "./downloads";
