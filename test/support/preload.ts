// Loaded before every test file (bunfig.toml): once all of them have run, the servers' temporary
// roots go. Each suite's servers are stopped by then; left behind, a full run's roots came to
// gigabytes in /tmp.
import { afterAll } from "bun:test";
import { removeTempDirs } from "./server";

afterAll(removeTempDirs);
