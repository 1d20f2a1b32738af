// JSON-lines driver for the independent MLS implementation ts-mls (RFC 9420).
//
// One request per line on stdin:  {"id": 1, "method": "create_group", "params": {...}}
// One response per line on stdout: {"id": 1, "result": {...}}  or  {"id": 1, "error": {...}}
// Binary values are lowercase hex strings; epochs and leaf indexes are JSON numbers.
// Requests are handled strictly one after another, so member state never races.
//
// One driver process is one ts-mls "client" holding any number of named members; each member
// has one signature key, the key packages it has published, and at most one group.
//
// Only ts-mls's public API is used (its index exports), plus a few codec/helper modules the
// package exports as "ts-mls/<module>.js" (tree (de)coding, key package refs, sender data), see
// README.md. Nothing of ts-mls is patched.

import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import {
  acceptAll,
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPub,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  mlsExporter,
  processMessage,
  zeroOutUint8Array,
} from "ts-mls";
import { decodeRatchetTree, encodeRatchetTree } from "ts-mls/ratchetTree.js";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decryptSenderData } from "ts-mls/privateMessage.js";
import { encodeGroupContext } from "ts-mls/groupContext.js";

const TS_MLS_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/ts-mls/package.json", import.meta.url), "utf8"),
).version;

// ---------------------------------------------------------------------------------------------
// helpers

class DriverError extends Error {
  constructor(message) {
    super(message);
    this.name = "DriverError";
  }
}

function fromHex(value, what) {
  if (typeof value !== "string" || value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) {
    throw new DriverError(`${what} must be an even-length hex string`);
  }
  return Uint8Array.from(Buffer.from(value, "hex"));
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

const utf8 = new TextEncoder();

function suiteName(suite) {
  if (typeof suite === "string" && suite in ciphersuites) return suite;
  const id = Number(suite);
  for (const [name, value] of Object.entries(ciphersuites)) {
    if (value === id) return name;
  }
  throw new DriverError(`unknown cipher suite ${JSON.stringify(suite)}`);
}

const implCache = new Map();

async function suiteImpl(suite) {
  const name = suiteName(suite);
  if (!implCache.has(name)) {
    implCache.set(name, await getCiphersuiteImpl(getCiphersuiteFromName(name)));
  }
  return implCache.get(name);
}

function decodeMessage(hex, what) {
  const bytes = fromHex(hex, what);
  const decoded = decodeMlsMessage(bytes, 0);
  if (decoded === undefined) throw new DriverError(`${what}: ts-mls cannot decode this MLSMessage`);
  const [message, consumed] = decoded;
  if (consumed !== bytes.length) {
    throw new DriverError(`${what}: ${bytes.length - consumed} trailing bytes after the MLSMessage`);
  }
  return message;
}

function wireformatOf(params) {
  // RFC 9420 §6: handshake messages may travel as PublicMessage or PrivateMessage; ts-mls
  // defaults to PrivateMessage for commits.
  const wf = params.wire_format ?? "private";
  if (wf !== "public" && wf !== "private") {
    throw new DriverError(`wire_format must be "public" or "private", not ${JSON.stringify(wf)}`);
  }
  return wf === "public";
}

// ---------------------------------------------------------------------------------------------
// signature keys
//
// ts-mls's own keygen (cs.signature.keygen) returns P-256/384/521 public keys in SEC1 *compressed*
// form (noble-curves' default). RFC 9420 §5.1.1 requires the uncompressed form, so by default the
// driver makes the key pair itself and hands it to generateKeyPackageWithKey. Pass
// compressed_signature_key=true to get ts-mls's default behaviour.

const NIST_CURVES = { P256: "p256", P384: "p384", P521: "p521" };

async function makeSignatureKeyPair(cs, signatureAlgorithm, compressed) {
  const curve = NIST_CURVES[signatureAlgorithm];
  if (curve === undefined || compressed) return cs.signature.keygen();
  const nist = await import("@noble/curves/nist.js");
  const impl = nist[curve];
  const signKey = impl.utils.randomSecretKey();
  return { signKey, publicKey: impl.getPublicKey(signKey, false) };
}

// ---------------------------------------------------------------------------------------------
// members

const members = new Map();

function member(name, { create = false } = {}) {
  if (typeof name !== "string" || name.length === 0) {
    throw new DriverError("member must be a non-empty string");
  }
  let m = members.get(name);
  if (m === undefined) {
    if (!create) throw new DriverError(`unknown member ${JSON.stringify(name)}`);
    m = {
      name,
      identity: undefined,
      suite: undefined,
      cs: undefined,
      signatureKeyPair: undefined,
      keyPackages: [], // {publicPackage, privatePackage, ref}
      state: undefined, // ts-mls ClientState
      pending: undefined, // {newState, consumed} of an own commit not merged yet
    };
    members.set(name, m);
  }
  return m;
}

function groupState(m) {
  if (m.state === undefined) throw new DriverError(`member ${m.name} is in no group`);
  return m.state;
}

async function ensureSigner(m, params) {
  const suite = suiteName(params.suite ?? m.suite ?? 1);
  if (m.suite !== undefined && m.suite !== suite) {
    throw new DriverError(`member ${m.name} uses ${m.suite}, not ${suite}`);
  }
  if (m.suite === undefined) {
    m.suite = suite;
    m.cs = await suiteImpl(suite);
    m.identity = params.identity ?? m.name;
    const signatureAlgorithm = getCiphersuiteFromName(suite).signature;
    m.signatureKeyPair = await makeSignatureKeyPair(
      m.cs,
      signatureAlgorithm,
      params.compressed_signature_key === true,
    );
  }
  return m;
}

function capabilities(grease) {
  // defaultCapabilities() adds random GREASE values (RFC 9420 §13.5) with probability 0.1 each.
  if (grease !== false) return defaultCapabilities();
  return {
    versions: ["mls10"],
    ciphersuites: Object.keys(ciphersuites),
    extensions: [],
    proposals: [],
    credentials: ["basic", "x509"],
  };
}

async function newKeyPackage(m, params) {
  const credential = { credentialType: "basic", identity: utf8.encode(m.identity) };
  const lifetime =
    params.lifetime === undefined
      ? defaultLifetime
      : { notBefore: BigInt(params.lifetime[0]), notAfter: BigInt(params.lifetime[1]) };
  const kp = await generateKeyPackageWithKey(
    credential,
    capabilities(params.grease),
    lifetime,
    [],
    m.signatureKeyPair,
    m.cs,
  );
  const ref = await makeKeyPackageRef(kp.publicPackage, m.cs.hash);
  const entry = { ...kp, ref };
  m.keyPackages.push(entry);
  return entry;
}

function commitResult(m, result, params) {
  // ts-mls's createCommit returns the state of the next epoch right away: it merges its own
  // commits as it creates them. With pending=true the driver keeps the old state until
  // merge_pending_commit (or drops the new one on clear_pending_commit), as RFC 9420 §12.4
  // expects when the delivery service may reject the commit.
  if (params.pending === true) {
    m.pending = { newState: result.newState, consumed: result.consumed };
  } else {
    m.state = result.newState;
    result.consumed.forEach(zeroOutUint8Array);
  }
  const out = {
    commit: toHex(encodeMlsMessage(result.commit)),
    epoch: Number(result.newState.groupContext.epoch),
  };
  if (result.welcome !== undefined) {
    out.welcome = toHex(
      encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: result.welcome }),
    );
  }
  return out;
}

async function commit(m, params, extraProposals) {
  const state = groupState(m);
  if (m.pending !== undefined) throw new DriverError(`member ${m.name} has a pending commit`);
  const result = await createCommit(
    { state, cipherSuite: m.cs },
    {
      extraProposals,
      wireAsPublicMessage: wireformatOf(params),
      ratchetTreeExtension: params.ratchet_tree_extension === true,
      authenticatedData:
        params.authenticated_data === undefined
          ? undefined
          : fromHex(params.authenticated_data, "authenticated_data"),
    },
  );
  return commitResult(m, result, params);
}

async function senderLeafOfPrivateMessage(state, pm, cs) {
  let secret;
  if (pm.epoch === state.groupContext.epoch) secret = state.keySchedule.senderDataSecret;
  else secret = state.historicalReceiverData.get(pm.epoch)?.senderDataSecret;
  if (secret === undefined) return undefined;
  const senderData = await decryptSenderData(pm, secret, cs);
  return senderData?.leafIndex;
}

function membersOf(state) {
  const out = [];
  state.ratchetTree.forEach((node, nodeIndex) => {
    if (node?.nodeType === "leaf") {
      out.push({
        leaf_index: nodeIndex / 2,
        identity: toHex(node.leaf.credential.identity ?? new Uint8Array()),
        signature_key: toHex(node.leaf.signaturePublicKey),
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// methods

const methods = {
  async ping() {
    return { ts_mls_version: TS_MLS_VERSION, node_version: process.version };
  },

  async create_key_package(params) {
    const m = await ensureSigner(member(params.member, { create: true }), params);
    const kp = await newKeyPackage(m, params);
    return {
      key_package: toHex(
        encodeMlsMessage({
          version: "mls10",
          wireformat: "mls_key_package",
          keyPackage: kp.publicPackage,
        }),
      ),
      key_package_ref: toHex(kp.ref),
      signature_key: toHex(m.signatureKeyPair.publicKey),
    };
  },

  async create_group(params) {
    const m = await ensureSigner(member(params.member, { create: true }), params);
    if (m.state !== undefined) throw new DriverError(`member ${m.name} is already in a group`);
    const kp = await newKeyPackage(m, params);
    m.state = await createGroup(
      fromHex(params.group_id, "group_id"),
      kp.publicPackage,
      kp.privatePackage,
      [],
      m.cs,
    );
    // The creator's leaf comes from this key package; it is not for anyone else to use.
    m.keyPackages = m.keyPackages.filter((k) => k !== kp);
    return { epoch: 0 };
  },

  async add_members(params) {
    const m = member(params.member);
    const keyPackages = params.key_packages ?? [];
    if (!Array.isArray(keyPackages) || keyPackages.length === 0) {
      throw new DriverError("key_packages must be a non-empty list of hex MLSMessages");
    }
    const proposals = keyPackages.map((hex, i) => {
      const msg = decodeMessage(hex, `key_packages[${i}]`);
      if (msg.wireformat !== "mls_key_package") {
        throw new DriverError(`key_packages[${i}] is a ${msg.wireformat}, not a key package`);
      }
      return { proposalType: "add", add: { keyPackage: msg.keyPackage } };
    });
    return commit(m, params, proposals);
  },

  async self_update(params) {
    // An empty commit: RFC 9420 §12.4 requires a path then, so ts-mls refreshes its leaf.
    return commit(member(params.member), params, []);
  },

  async remove_member(params) {
    const leafIndex = Number(params.leaf_index);
    if (!Number.isInteger(leafIndex) || leafIndex < 0) {
      throw new DriverError("leaf_index must be a non-negative integer");
    }
    return commit(member(params.member), params, [
      { proposalType: "remove", remove: { removed: leafIndex } },
    ]);
  },

  async merge_pending_commit(params) {
    const m = member(params.member);
    if (m.pending === undefined) throw new DriverError(`member ${m.name} has no pending commit`);
    m.state = m.pending.newState;
    m.pending.consumed.forEach(zeroOutUint8Array);
    m.pending = undefined;
    return { epoch: Number(m.state.groupContext.epoch) };
  },

  async clear_pending_commit(params) {
    const m = member(params.member);
    if (m.pending === undefined) throw new DriverError(`member ${m.name} has no pending commit`);
    m.pending = undefined;
    return { epoch: Number(groupState(m).groupContext.epoch) };
  },

  async join_from_welcome(params) {
    const m = member(params.member);
    if (m.state !== undefined) throw new DriverError(`member ${m.name} is already in a group`);
    const msg = decodeMessage(params.welcome, "welcome");
    if (msg.wireformat !== "mls_welcome") {
      throw new DriverError(`welcome is a ${msg.wireformat}, not a welcome`);
    }
    const welcome = msg.welcome;
    const refs = new Set(welcome.secrets.map((s) => toHex(s.newMember)));
    const kp = m.keyPackages.find((k) => refs.has(toHex(k.ref)));
    if (kp === undefined) {
      throw new DriverError(`the welcome names none of ${m.name}'s key packages`);
    }
    let tree;
    if (params.ratchet_tree !== undefined && params.ratchet_tree !== null) {
      const bytes = fromHex(params.ratchet_tree, "ratchet_tree");
      const decoded = decodeRatchetTree(bytes, 0);
      if (decoded === undefined || decoded[1] !== bytes.length) {
        throw new DriverError("ts-mls cannot decode ratchet_tree");
      }
      tree = decoded[0];
    }
    m.state = await joinGroup(welcome, kp.publicPackage, kp.privatePackage, emptyPskIndex, m.cs, tree);
    // RFC 9420 §16.8: a key package is used once.
    m.keyPackages = m.keyPackages.filter((k) => k !== kp);
    return {
      epoch: Number(m.state.groupContext.epoch),
      leaf_index: m.state.privatePath.leafIndex,
      group_id: toHex(m.state.groupContext.groupId),
    };
  },

  async process_message(params) {
    const m = member(params.member);
    const state = groupState(m);
    const msg = decodeMessage(params.message, "message");
    if (msg.wireformat !== "mls_public_message" && msg.wireformat !== "mls_private_message") {
      throw new DriverError(`cannot process a ${msg.wireformat} as a group message`);
    }
    let senderLeaf;
    const callback = (incoming) => {
      senderLeaf =
        incoming.kind === "commit" ? incoming.senderLeafIndex : incoming.proposal.senderLeafIndex;
      return acceptAll(incoming);
    };
    if (msg.wireformat === "mls_private_message") {
      senderLeaf = await senderLeafOfPrivateMessage(state, msg.privateMessage, m.cs);
    } else if (msg.publicMessage.content.sender.senderType === "member") {
      senderLeaf = msg.publicMessage.content.sender.leafIndex;
    }
    const contentType =
      msg.wireformat === "mls_private_message"
        ? msg.privateMessage.contentType
        : msg.publicMessage.content.contentType;
    const result = await processMessage(msg, state, emptyPskIndex, callback, m.cs);
    if (result.newState.groupContext.epoch !== state.groupContext.epoch) {
      // Another member's commit won this epoch: an own pending commit is void (RFC 9420 §14).
      m.pending = undefined;
    }
    m.state = result.newState;
    result.consumed.forEach(zeroOutUint8Array);
    const out = {
      kind: result.kind === "applicationMessage" ? "application" : contentType,
      epoch: Number(m.state.groupContext.epoch),
      sender_leaf: senderLeaf ?? null,
      removed: m.state.groupActiveState.kind === "removedFromGroup",
    };
    if (result.kind === "applicationMessage") out.application_data = toHex(result.message);
    return out;
  },

  async encrypt(params) {
    const m = member(params.member);
    const result = await createApplicationMessage(
      groupState(m),
      fromHex(params.plaintext, "plaintext"),
      m.cs,
      params.authenticated_data === undefined
        ? undefined
        : fromHex(params.authenticated_data, "authenticated_data"),
    );
    m.state = result.newState;
    result.consumed.forEach(zeroOutUint8Array);
    return {
      message: toHex(
        encodeMlsMessage({
          version: "mls10",
          wireformat: "mls_private_message",
          privateMessage: result.privateMessage,
        }),
      ),
    };
  },

  async export_secret(params) {
    const m = member(params.member);
    // ts-mls takes the exporter label as a string (encoded as UTF-8 for DeriveSecret).
    const secret = await mlsExporter(
      groupState(m).keySchedule.exporterSecret,
      String(params.label),
      fromHex(params.context ?? "", "context"),
      Number(params.length),
      m.cs,
    );
    return { secret: toHex(secret) };
  },

  async epoch(params) {
    return { epoch: Number(groupState(member(params.member)).groupContext.epoch) };
  },

  async epoch_authenticator(params) {
    const state = groupState(member(params.member));
    return { epoch_authenticator: toHex(state.keySchedule.epochAuthenticator) };
  },

  async group_info(params) {
    // RFC 9420 §12.4.3.1: a GroupInfo with external_pub (ts-mls always adds it here), and the
    // ratchet_tree extension if asked for.
    const m = member(params.member);
    const state = groupState(m);
    const make =
      params.ratchet_tree_extension === true
        ? createGroupInfoWithExternalPubAndRatchetTree
        : createGroupInfoWithExternalPub;
    const groupInfo = await make(state, [], m.cs);
    return {
      group_info: toHex(
        encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo }),
      ),
    };
  },

  async ratchet_tree(params) {
    return { ratchet_tree: toHex(encodeRatchetTree(groupState(member(params.member)).ratchetTree)) };
  },

  async group_summary(params) {
    const m = member(params.member);
    const state = groupState(m);
    return {
      epoch: Number(state.groupContext.epoch),
      group_id: toHex(state.groupContext.groupId),
      cipher_suite: ciphersuites[state.groupContext.cipherSuite],
      leaf_index: state.privatePath.leafIndex,
      group_context: toHex(encodeGroupContext(state.groupContext)),
      tree_hash: toHex(state.groupContext.treeHash),
      confirmed_transcript_hash: toHex(state.groupContext.confirmedTranscriptHash),
      members: membersOf(state),
      active: state.groupActiveState.kind,
      pending_commit: m.pending !== undefined,
    };
  },

  async bench(params) {
    const { runBench } = await import("./bench_driver.mjs");
    return runBench(params);
  },
};

// ---------------------------------------------------------------------------------------------
// JSON lines loop

function errorInfo(err) {
  if (err instanceof Error) {
    return { type: err.name || err.constructor?.name || "Error", message: String(err.message) };
  }
  return { type: "Error", message: String(err) };
}

function respond(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    respond({ id: null, error: { type: "ProtocolError", message: `bad JSON: ${err.message}` } });
    return;
  }
  const { id = null, method, params = {} } = request ?? {};
  if (method === "shutdown") {
    respond({ id, result: {} });
    process.exit(0);
  }
  const fn = Object.hasOwn(methods, method) ? methods[method] : undefined;
  if (fn === undefined) {
    respond({ id, error: { type: "ProtocolError", message: `unknown method ${JSON.stringify(method)}` } });
    return;
  }
  try {
    respond({ id, result: await fn(params) });
  } catch (err) {
    respond({ id, error: errorInfo(err) });
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (line.trim() === "") return;
  queue = queue.then(() => handle(line));
});
rl.on("close", () => {
  queue.then(() => process.exit(0));
});
