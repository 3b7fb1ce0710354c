// `actiond doctor`: checks what this machine allows, by trying it where it can (the sandbox runs a
// real command), and says in plain words what works and what the user must do for what does not.
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { which } from "bun";
import { createLogger, isPrivileged, removeTree } from "../core";
import { embeddedPayload, localAssets, type LocalAssets, type PayloadManifest } from "../assets";
import { openRuntimes, type RuntimeSet } from "../runtime";
import { cgroupLimitsUnavailable, describeActionLimits, probeSandbox, type ActionBounds } from "../sandbox";
import { namespaceSandbox } from "../exec";
import { hostQemu, kvmOpenError } from "../vmhost";
import { flagsHelp, parseFlags } from "./flags";
import { ACTION_LIMIT_FLAGS, rootFlag, sandboxHelperFlag } from "./shared-flags";

const DOCTOR_FLAGS = {
  root: rootFlag("the folder serve would use; embedded assets are extracted there, as serve does"),
  "sandbox-helper": sandboxHelperFlag,
  // serve's, so doctor reports the bounds serve would apply (the same ACTIOND_ variables too).
  ...ACTION_LIMIT_FLAGS,
};

const DOCTOR_HELP = `Usage: actiond doctor [flags]

Checks what this machine allows actiond to do: the sandbox (namespaces, user namespaces), runtime
images (squashfs), cgroup v2 limits and what else bounds each action (--action-* as serve takes
them), and virtualization for serve-vm (KVM, or Virtualization.framework on macOS). Prints what
works and what to do for what does not. Exit status 0 when \`actiond serve\` can run actions here
(on macOS: when \`actiond serve-vm\` can), 1 otherwise.

Flags:
${flagsHelp(DOCTOR_FLAGS)}
`;

type Verdict = "ok" | "warn" | "FAIL" | "info";
interface Finding {
  verdict: Verdict;
  area: string;
  says: string;
  /** What the user can do about it. */
  fix?: string;
}

export async function doctor(argv: string[]): Promise<number> {
  const opts = parseFlags("doctor", DOCTOR_FLAGS, argv);
  if (opts === "help") {
    process.stdout.write(DOCTOR_HELP);
    return 0;
  }
  const root = opts.root;
  const privileged = isPrivileged();
  const findings: Finding[] = [];
  const report = (f: Finding) => {
    findings.push(f);
    process.stdout.write(`  ${f.verdict.padEnd(5)} ${f.area.padEnd(16)} ${f.says}\n${f.fix ? `  ${"".padEnd(5)} ${"".padEnd(16)} → ${f.fix}\n` : ""}`);
  };
  const uid = process.getuid?.();
  const who = privileged ? "as root" : uid === 0 ? "as root without CAP_SYS_ADMIN, as in a container: the rootless way" : `as uid ${uid}`;
  process.stdout.write(`actiond doctor: what this machine allows (${process.platform}-${process.arch}, ${who})\n`);

  let works: boolean;
  if (process.platform === "linux") {
    const bounds = { memoryBytes: opts["action-memory"], pids: opts["action-pids"], tmpBytes: opts["action-tmp-size"] };
    works = await linuxChecks(root, privileged, opts["sandbox-helper"], bounds, report);
  } else if (process.platform === "darwin") {
    works = macChecks((await embeddedPayload())?.manifest, report);
  } else {
    report({ verdict: "FAIL", area: "platform", says: `actiond runs on Linux and macOS, not ${process.platform}` });
    works = false;
  }
  const command = process.platform === "darwin" ? "actiond serve-vm" : "actiond serve";
  process.stdout.write(works ? `${command} can run actions here.\n` : `${command} cannot run actions here yet: see the FAIL lines above.\n`);
  return works ? 0 : 1;
}

async function linuxChecks(root: string, privileged: boolean, helperFlag: string | undefined, bounds: ActionBounds, report: (f: Finding) => void): Promise<boolean> {
  const quiet = createLogger("error");
  mkdirSync(root, { recursive: true });
  let assets: LocalAssets;
  try {
    assets = await localAssets(root, quiet);
  } catch (err) {
    report({ verdict: "FAIL", area: "embedded assets", says: (err as Error).message });
    return false;
  }
  if (helperFlag) assets = { ...assets, helper: helperFlag };
  const from = assets.origin === "embedded" ? "carried by this executable" : "built in this checkout";
  if (!assets.helper) {
    report({ verdict: "FAIL", area: "sandbox helper", says: `none ${from}`, fix: assets.origin === "checkout" ? "run `bash shim/build.sh`" : "download actiond again" });
    return false;
  }
  report({ verdict: "ok", area: "sandbox helper", says: `${from}: ${assets.helper}` });

  // Mounts go to a private folder (a server using this root keeps its own); unpacked copies are
  // shared with serve, which would otherwise unpack the same image again.
  const scratch = mkdtempSync(join(root, "doctor-"));
  let runtimes: RuntimeSet | undefined;
  try {
    runtimes = await openRuntime(assets, scratch, root, privileged);
    if (!runtimes) {
      report({ verdict: "FAIL", area: "runtime image", says: "none to run actions in", fix: "build one with `bun runtimes/build.ts --profile cc`, or pass --runtime-image / --runtime-root to serve" });
    } else {
      const r = runtimes.default;
      const how = {
        kernel: "mounted with the kernel's squashfs (root)",
        squashfuse: "mounted with squashfuse (FUSE)",
        extract: "unpacked once with unsquashfs (no root, no FUSE): works, but uses disk and a slower first start",
        directory: "a directory",
      }[r.method];
      report({ verdict: "ok", area: "runtime image", says: `${r.name} (${r.libc}, ${r.arch}) ${how}`, fix: r.method === "extract" ? "for mounting without root: apt-get install squashfuse, and access to /dev/fuse" : undefined });
    }
  } catch (err) {
    // The message lists each way tried and why it could not be used; the last line says what to do.
    const lines = (err as Error).message.split("\n");
    report({ verdict: "FAIL", area: "runtime image", says: lines.slice(0, -1).join(" "), fix: lines.at(-1) });
  }

  let sandboxWorks = false;
  if (runtimes) {
    try {
      const sandbox = namespaceSandbox(assets, privileged, bounds);
      const workRoot = join(scratch, "exec");
      mkdirSync(workRoot, { mode: 0o700 });
      await probeSandbox(sandbox, { runtimeRoot: runtimes.default.root, workRoot, privileged, log: quiet });
      sandboxWorks = true;
      report({
        verdict: "ok",
        area: "namespaces",
        says: privileged
          ? "actions run in their own mount, PID, network, IPC and UTS namespaces"
          : "actions run rootless: in a user namespace, with their own mount, PID, network, IPC and UTS namespaces",
      });
    } catch (err) {
      report({ verdict: "FAIL", area: "namespaces", says: (err as Error).message.replace(/ Or pass --sandbox=none.*$/, ""), fix: "fix the above, or run serve with --sandbox=none (no isolation)" });
    } finally {
      await runtimes.close();
    }
  }
  removeTree(scratch, createLogger("error"));

  if (privileged) userNamespaceCheck(report);
  const noLimits = cgroupLimitsUnavailable();
  report(
    noLimits
      ? {
          verdict: "warn",
          area: "cgroup v2",
          says: `per-action cgroup limits (memory, pids, cpu) cannot be applied: ${noLimits}; see "action limits" for what bounds actions instead`,
          fix: "use a cgroup v2 host (systemd.unified_cgroup_hierarchy=1), and run serve in a delegated cgroup, e.g. systemd-run --user -p Delegate=yes actiond serve",
        }
      : { verdict: "ok", area: "cgroup v2", says: "per-action limits (memory, pids, cpu) can be applied" },
  );
  // What serve (with these flags) bounds each action by here, and what it cannot bound.
  if (sandboxWorks) {
    const limits = describeActionLimits(bounds, { cgroupsUnavailable: noLimits, privileged });
    for (const says of limits.applies) report({ verdict: "ok", area: "action limits", says });
    for (const says of limits.unbounded) report({ verdict: "warn", area: "action limits", says: `not bounded here: ${says}` });
  }
  vmChecks(assets, report);
  return sandboxWorks;
}

/** The runtime serve would use: mounted in `scratch`, or else unpacked where serve keeps unpacked images. */
async function openRuntime(assets: LocalAssets, scratch: string, root: string, privileged: boolean): Promise<RuntimeSet | undefined> {
  if (assets.runtimeImages.length === 0) return undefined;
  const log = createLogger("error");
  const images = assets.runtimeImages.slice(0, 1);
  try {
    return await openRuntimes({ images, roots: [], stateDir: scratch, methods: ["kernel", "squashfuse"], privileged, log, digests: assets.digests });
  } catch {
    return await openRuntimes({ images, roots: [], stateDir: join(root, "runtimes"), methods: ["extract"], privileged, log, digests: assets.digests });
  }
}

/** As root, whether a plain user could run serve (rootless): the kernel settings that forbid it. */
function userNamespaceCheck(report: (f: Finding) => void): void {
  const read = (p: string) => (existsSync(p) ? readFileSync(p, "utf8").trim() : undefined);
  const blockers: string[] = [];
  if (read("/proc/sys/user/max_user_namespaces") === "0") blockers.push("sysctl user.max_user_namespaces=0 (set it to e.g. 15000)");
  if (read("/proc/sys/kernel/unprivileged_userns_clone") === "0") blockers.push("sysctl kernel.unprivileged_userns_clone=0 (set it to 1)");
  if (read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") === "1") {
    blockers.push("AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for actiond)");
  }
  report(
    blockers.length === 0
      ? { verdict: "ok", area: "user namespaces", says: "plain users may create them, so serve also runs without root (rootless)" }
      : { verdict: "info", area: "user namespaces", says: "serve runs as root here, but a plain user could not run it (rootless)", fix: blockers.join("; ") },
  );
}

function vmChecks(assets: LocalAssets, report: (f: Finding) => void): void {
  const kvm = kvmOpenError();
  if (!kvm) {
    report({ verdict: "ok", area: "KVM", says: "/dev/kvm opens: serve-vm tries KVM first (and uses software emulation if QEMU cannot run a guest with it)" });
  } else if (kvm.code === "ENOENT") {
    report({
      verdict: "warn",
      area: "KVM",
      says: "no /dev/kvm: serve-vm would emulate its guest in software, many times slower (serve is not affected)",
      fix: "enable virtualization (VT-x/AMD-V in the firmware, or nested virtualization for a VM) and load kvm_intel or kvm_amd",
    });
  } else {
    report({
      verdict: "warn",
      area: "KVM",
      says: `/dev/kvm exists but cannot be opened (${kvm.message})`,
      fix: kvm.code === "EACCES" ? "add the user to the kvm group (usermod -aG kvm USER) and log in again" : "load kvm_intel or kvm_amd, with virtualization enabled in the firmware",
    });
  }
  const qemu = hostQemu();
  if (!which(qemu.binary)) report({ verdict: "info", area: "QEMU", says: `${qemu.binary} is not installed: serve-vm needs it on Linux`, fix: `apt-get install ${qemu.debianPackage}` });
  for (const m of assets.manifest?.missing ?? []) report({ verdict: "info", area: "serve-vm", says: `this build has no ${m.role}: ${m.reason}` });
}

function macChecks(manifest: PayloadManifest | undefined, report: (f: Finding) => void): boolean {
  report({ verdict: "info", area: "serve", says: "actions need Linux: on macOS they run in a Linux VM (actiond serve-vm)" });
  if (process.arch !== "arm64") {
    report({ verdict: "FAIL", area: "processor", says: "serve-vm needs Apple silicon (its Linux guest is arm64)" });
    return false;
  }
  const sysctl = Bun.spawnSync(["/usr/sbin/sysctl", "-n", "kern.hv_support"]).stdout.toString().trim();
  const hv = sysctl === "1";
  report(
    hv
      ? { verdict: "ok", area: "hypervisor", says: "Virtualization.framework can run VMs here" }
      : { verdict: "FAIL", area: "hypervisor", says: "kern.hv_support is not 1: this Mac cannot run VMs (inside a VM without nested virtualization?)" },
  );
  const signed = Bun.spawnSync(["/usr/bin/codesign", "-d", "--entitlements", "-", "--xml", process.execPath], { stderr: "pipe" });
  const entitled = signed.stdout.toString().includes("com.apple.security.virtualization");
  report(
    entitled
      ? { verdict: "ok", area: "entitlement", says: "this executable is signed with com.apple.security.virtualization" }
      : {
          verdict: "FAIL",
          area: "entitlement",
          says: "this executable lacks the com.apple.security.virtualization entitlement, so it cannot start a VM",
          fix: `codesign --force --sign - --entitlements actiond.entitlements ${process.execPath} (install.sh and the Homebrew formula do this)`,
        },
  );
  const missing = manifest ? manifest.missing : [{ role: "guest-kernel", reason: "running from source: build with `npm run build`" }];
  for (const m of missing) report({ verdict: "FAIL", area: "serve-vm", says: `this build has no ${m.role}: ${m.reason}` });
  return hv && entitled && missing.length === 0;
}
