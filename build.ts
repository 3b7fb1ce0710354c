// `npm run build`: compile actiond into one standalone executable for this machine, dist/actiond-<os>-<arch>.
// (Cross-targets and embedded assets come with the packaging work.)
import { $ } from "bun";

const target = `${process.platform}-${process.arch}`;
const outfile = `dist/actiond-${target}`;
await $`bun build --compile --minify --sourcemap src/main.ts --outfile ${outfile}`;
console.log(`built ${outfile}`);
