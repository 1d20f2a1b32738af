// Times ts-mls inside Node for a group of N members (N-1 added in one commit).
//
// As a driver method:  {"method": "bench", "params": {"n": 64, "suite": 1, "runs": 3}}
// From a shell:         node bench_driver.mjs --suite 1 --n 2,16,128,1024 --runs 3
//
// Steps, each in wall-clock milliseconds (`ms`) and process CPU milliseconds (`cpu_ms`), median
// over `runs` (key package generation is timed apart and is not part of the others):
//   add_commit        creator commits Add for N-1 key packages (commit + Welcome), one commit
//   join              one new member (leaf 1) processes the Welcome (tree given out of band)
//   self_update       the creator commits an empty commit with a path (the tree's parent nodes
//                     are blank after ts-mls's path-less Add commit, so it encrypts to N-1 leaves)
//   process_commit    the joined member processes that commit
//   encrypt, decrypt  one application message of `message_size` bytes (median over `messages`)
// Messages are encoded to and decoded from bytes, as on a wire.

import {
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
  acceptAll,
} from "ts-mls";

function suiteName(suite) {
  if (typeof suite === "string" && suite in ciphersuites) return suite;
  for (const [name, id] of Object.entries(ciphersuites)) if (id === Number(suite)) return name;
  throw new Error(`unknown cipher suite ${suite}`);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const plainCapabilities = {
  versions: ["mls10"],
  ciphersuites: Object.keys(ciphersuites),
  extensions: [],
  proposals: [],
  credentials: ["basic"],
};

async function keyPackage(name, cs) {
  const credential = { credentialType: "basic", identity: new TextEncoder().encode(name) };
  return generateKeyPackage(credential, plainCapabilities, defaultLifetime, [], cs);
}

function roundTrip(message) {
  const bytes = encodeMlsMessage(message);
  return [decodeMlsMessage(bytes, 0)[0], bytes.length];
}

// Wall-clock ms; the process CPU ms of each step (user + system, every thread) is recorded on
// the side in `cpu`, which stays meaningful when the machine is shared.
let cpu = {};

async function timed(fn, key) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  if (key !== undefined) {
    const c = process.cpuUsage(c0);
    (cpu[key] ??= []).push((c.user + c.system) / 1000);
  }
  return [ms, value];
}

async function oneRun(n, cs, messages, messageSize) {
  const ms = {};
  const sizes = {};
  const [kpMs, kps] = await timed(
    () => Promise.all(Array.from({ length: n }, (_, i) => keyPackage(`member-${i}`, cs))),
    "key_packages",
  );
  ms.key_packages = kpMs;
  const creator = kps[0];
  let creatorState = await createGroup(
    new TextEncoder().encode("bench"),
    creator.publicPackage,
    creator.privatePackage,
    [],
    cs,
  );
  if (n > 1) {
    const adds = kps.slice(1).map((kp) => ({ proposalType: "add", add: { keyPackage: kp.publicPackage } }));
    const [addMs, added] = await timed(async () => {
      const r = await createCommit({ state: creatorState, cipherSuite: cs }, { extraProposals: adds });
      return [r, encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: r.welcome })];
    }, "add_commit");
    ms.add_commit = addMs;
    creatorState = added[0].newState;
    const welcomeBytes = added[1];
    sizes.welcome = welcomeBytes.length;
    sizes.add_commit = encodeMlsMessage(added[0].commit).length;
    const joiner = kps[1];
    const [joinMs, joinerState0] = await timed(async () => {
      const welcome = decodeMlsMessage(welcomeBytes, 0)[0].welcome;
      return joinGroup(welcome, joiner.publicPackage, joiner.privatePackage, emptyPskIndex, cs, creatorState.ratchetTree);
    }, "join");
    ms.join = joinMs;
    let joinerState = joinerState0;

    const [updMs, upd] = await timed(async () => {
      const r = await createCommit({ state: creatorState, cipherSuite: cs }, {});
      return [r, encodeMlsMessage(r.commit)];
    }, "self_update");
    ms.self_update = updMs;
    creatorState = upd[0].newState;
    sizes.self_update_commit = upd[1].length;
    const [procMs, processed] = await timed(async () => {
      const msg = decodeMlsMessage(upd[1], 0)[0];
      return processMessage(msg, joinerState, emptyPskIndex, acceptAll, cs);
    }, "process_commit");
    ms.process_commit = procMs;
    joinerState = processed.newState;

    const payload = new Uint8Array(messageSize).fill(0x61);
    const enc = [];
    const dec = [];
    for (let i = 0; i < messages; i++) {
      const [eMs, [r, bytes]] = await timed(async () => {
        const r = await createApplicationMessage(creatorState, payload, cs);
        return [r, encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: r.privateMessage })];
      }, "encrypt");
      creatorState = r.newState;
      enc.push(eMs);
      sizes.application_message = bytes.length;
      const [dMs, out] = await timed(
        () => processMessage(decodeMlsMessage(bytes, 0)[0], joinerState, emptyPskIndex, acceptAll, cs),
        "decrypt",
      );
      if (out.kind !== "applicationMessage" || out.message.length !== messageSize) {
        throw new Error("bench: application message did not round-trip");
      }
      joinerState = out.newState;
      dec.push(dMs);
    }
    ms.encrypt = median(enc);
    ms.decrypt = median(dec);
  }
  return { ms, sizes };
}

export async function runBench(params) {
  const n = Number(params.n);
  if (!Number.isInteger(n) || n < 1) throw new Error("n must be a positive integer");
  const runs = Number(params.runs ?? 3);
  const messages = Number(params.messages ?? 20);
  const messageSize = Number(params.message_size ?? 1024);
  const name = suiteName(params.suite ?? 1);
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName(name));
  const results = [];
  cpu = {};
  for (let r = 0; r < runs; r++) results.push(await oneRun(n, cs, messages, messageSize));
  const ms = {};
  for (const key of Object.keys(results[0].ms)) ms[key] = median(results.map((x) => x.ms[key]));
  const cpuMs = {};
  for (const [key, values] of Object.entries(cpu)) cpuMs[key] = median(values);
  return { n, suite: ciphersuites[name], runs, message_size: messageSize, ms, cpu_ms: cpuMs, sizes: results[0].sizes };
}

// CLI: node bench_driver.mjs --suite 1 --n 2,16,128 --runs 3
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
  );
  const suite = Number(args.suite ?? 1);
  const runs = Number(args.runs ?? 3);
  const ns = String(args.n ?? "2,16,128").split(",").map(Number);
  const cols = ["key_packages", "add_commit", "join", "self_update", "process_commit", "encrypt", "decrypt"];
  console.log(`ts-mls bench, suite ${suite}, median of ${runs} run(s), wall ms (process CPU ms)`);
  console.log(["n", ...cols].join("\t"));
  const fmt = (v) => (v === undefined ? "-" : v.toFixed(v < 100 ? 2 : 0));
  for (const n of ns) {
    const r = await runBench({ n, suite, runs, messages: Number(args.messages ?? 20) });
    console.log([n, ...cols.map((c) => `${fmt(r.ms[c])} (${fmt(r.cpu_ms[c])})`)].join("\t"));
  }
}
