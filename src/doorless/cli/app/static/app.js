// The Doorless app: the screen of the local Doorless client (docs/app.md).
import { $, h, replace, size, time } from "./dom.js";
import { Rpc } from "./rpc.js";
import { openDialog, field } from "./dialog.js";
import { CallMedia } from "./call.js";

const state = {
  account: null,
  conversations: new Map(),
  current: null,
  unread: new Map(),
  shown: new Set(), // message ids in the open conversation
  nicknames: new Map(), // username -> local nickname (never sent)
  replyTo: null, // the message the composer answers
  readUpTo: new Map(), // conversation id -> Map(reader user -> message id)
  localIds: new Map(), // message id -> local id (this profile's order)
  lastRead: new Map(), // conversation id -> the last message id we sent a receipt for
  typingSent: 0,
  typingTimer: null,
  call: null, // {id, media: CallMedia}
  ringing: null, // an incoming call_updated event
};

const rpc = new Rpc(onNotification, onConnection);

function say(text) {
  $("status").textContent = text;
}

async function onConnection(open) {
  if (!open) {
    say("Disconnected from the Doorless program: is 'doorless app' still running? Retrying…");
    return;
  }
  say("");
  showStatus(await rpc.call("appStatus"));
}

function onNotification(method, params) {
  if (method === "app") showStatus(params);
  else if (method === "event") onEvent(params);
}

// --- onboarding --------------------------------------------------------------------------

function showStatus(status) {
  const ready = status.state === "ready";
  $("onboarding").hidden = ready;
  $("chat").hidden = !ready;
  if (ready) {
    if (!state.account) startChat(status.account);
    return;
  }
  const linking = status.state === "linking";
  $("linking").hidden = !linking;
  document.querySelector(".tabs").hidden = linking;
  $("form-create").hidden = linking || $("tab-create").getAttribute("aria-selected") !== "true";
  $("form-link").hidden = linking || $("tab-link").getAttribute("aria-selected") !== "true";
  $("onboarding-error").textContent = status.error || "";
  if (linking) {
    $("link-code").textContent = status.link.code;
    $("link-fingerprint").textContent = status.link.fingerprint;
    $("link-qr").src = status.link.qr;
  }
}

function selectTab(which) {
  for (const name of ["create", "link"]) {
    $(`tab-${name}`).setAttribute("aria-selected", String(name === which));
    $(`form-${name}`).hidden = name !== which;
  }
}
$("tab-create").addEventListener("click", () => selectTab("create"));
$("tab-link").addEventListener("click", () => selectTab("link"));

function formParams(form) {
  const params = {};
  for (const [name, value] of new FormData(form)) if (value) params[name] = value;
  return params;
}

for (const [formId, method] of [
  ["form-create", "createAccount"],
  ["form-link", "beginLink"],
]) {
  $(formId).addEventListener("submit", async (e) => {
    e.preventDefault();
    $("onboarding-error").textContent = "";
    const button = e.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      showStatus(await rpc.call(method, formParams(e.target)));
    } catch (err) {
      $("onboarding-error").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
}
$("link-cancel").addEventListener("click", async () => showStatus(await rpc.call("cancelLink")));

// --- conversations -----------------------------------------------------------------------

async function startChat(account) {
  state.account = account;
  $("me").textContent = `@${account.username}`;
  await loadNicknames();
  await Promise.all([loadConversations(), loadRequests(), loadAlarms()]);
  const notices = await rpc.call("takeNotices");
  for (const event of notices.events) onEvent(event);
}

async function loadConversations() {
  const { conversations } = await rpc.call("listConversations");
  state.conversations = new Map(conversations.map((c) => [c.id, c]));
  renderConversations();
  if (state.current && state.conversations.has(state.current)) renderHeader();
}

// A local nickname is shown as "~Nick (@user)": the "~" and the username in brackets keep a
// peer from passing off a chosen name as one of your nicknames.
function who(user) {
  const nickname = state.nicknames.get(user);
  return nickname ? `~${nickname} (@${user})` : `@${user}`;
}

async function loadNicknames() {
  const { contacts } = await rpc.call("listContacts");
  state.nicknames = new Map(contacts.filter((c) => c.nickname).map((c) => [c.username, c.nickname]));
}

function peer(conv) {
  return conv.members.find((m) => m !== state.account.username);
}

function title(conv) {
  if (conv.kind === "group") return conv.name;
  const other = peer(conv);
  return other ? who(other) : conv.name;
}

function renderConversations() {
  const items = [...state.conversations.values()]
    .sort((a, b) => b.updated_at - a.updated_at)
    .map((conv) => {
      const unread = state.unread.get(conv.id) || 0;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: conv.id === state.current ? "conv current" : "conv",
            "aria-current": conv.id === state.current ? "true" : null,
            onclick: () => openConversation(conv.id),
          },
          h("span", { class: "conv-title" }, title(conv)),
          conv.status === "removed" ? h("span", { class: "muted" }, " (left)") : null,
          unread ? h("span", { class: "badge", "aria-label": `${unread} unread` }, unread) : null,
        ),
      );
    });
  replace($("conversations"), items);
}

async function openConversation(id) {
  state.current = id;
  state.unread.delete(id);
  state.shown = new Set();
  cancelReply();
  $("typing").textContent = "";
  document.body.classList.add("in-conversation");
  renderConversations();
  renderHeader();
  replace($("messages"));
  $("composer").hidden = state.conversations.get(id).status === "removed";
  const { messages } = await rpc.call("history", { conversation_id: id, limit: 200 });
  if (state.current !== id) return;
  for (const m of messages) showMessage(m);
  $("compose-text").focus();
}

function renderHeader() {
  const conv = state.conversations.get(state.current);
  $("conv-title").textContent = title(conv);
  $("conv-members").textContent =
    conv.kind === "group" ? `${conv.members.length} members: ${conv.members.join(", ")}` : "";
  $("conv-safety").hidden = conv.kind !== "direct";
  $("conv-call").hidden = conv.status === "removed";
  $("conv-video").hidden = conv.status === "removed";
  $("conv-manage").hidden = conv.kind !== "group";
  $("conv-block").hidden = conv.kind !== "direct";
  $("conv-nickname").hidden = conv.kind !== "direct";
  $("conv-timer-label").hidden = false;
}

$("back").addEventListener("click", () => document.body.classList.remove("in-conversation"));

// --- messages ----------------------------------------------------------------------------

function showMessage(m, { scroll = true } = {}) {
  state.localIds.set(m.message_id, m.local_id);
  if (m.conversation_id !== state.current) return;
  const existing = document.getElementById(`m-${m.message_id}`);
  const el = renderMessage(m);
  if (existing) existing.replaceWith(el);
  else {
    $("messages").append(el);
    if (scroll) el.scrollIntoView({ block: "end" });
    markRead(m);
  }
  state.shown.add(m.message_id);
}

const EMOJI = ["👍", "❤️", "😂", "😮", "😢"];

function renderMessage(m) {
  const author = m.outgoing ? "you" : who(m.sender.user);
  const body = [];
  if (m.reply_to) {
    body.push(
      h("blockquote", { class: "quote" },
        m.reply_text === null ? "(deleted)" : m.reply_text),
    );
  }
  if (m.deleted) {
    body.push(h("p", { class: "text deleted" }, "(deleted)"));
  } else if (m.kind === "file" && m.file) {
    const progress = h("progress", { max: 1, value: 0, hidden: true });
    body.push(
      h("span", { class: "file" }, `File: ${m.file.name} (${size(m.file.size)})`),
      h("button", { type: "button", onclick: () => download(m, progress) }, "Download"),
      progress,
    );
  } else {
    body.push(h("p", { class: "text" }, m.text ?? ""));
  }
  const status = m.state === "pending" ? " · sending" : m.state === "failed" ? " · not sent" : "";
  const tags = [
    m.transferred ? " · transferred" : "",
    m.outgoing && isRead(m) ? " · read" : "",
  ].join("");
  return h(
    "li",
    {
      id: `m-${m.message_id}`,
      class: ["message", m.outgoing ? "outgoing" : "", m.mentions_me ? "mentions-me" : ""].join(" "),
    },
    h(
      "div",
      { class: "meta" },
      h("strong", {}, author),
      ` · ${time(m.sent_at)}${status}${tags}`,
      m.edited && !m.deleted
        ? h("button", { type: "button", class: "link", onclick: () => showEdits(m) }, " · edited")
        : null,
    ),
    ...body,
    reactions(m),
    m.deleted ? null : actions(m),
  );
}

function reactions(m) {
  if (!m.reactions || !m.reactions.length) return null;
  const byEmoji = new Map();
  for (const r of m.reactions) byEmoji.set(r.emoji, [...(byEmoji.get(r.emoji) || []), r.user]);
  return h(
    "div",
    { class: "reactions" },
    [...byEmoji].map(([emoji, users]) => {
      const mine = users.includes(state.account.username);
      return h(
        "button",
        {
          type: "button",
          class: mine ? "chip mine" : "chip",
          "aria-pressed": String(mine),
          title: users.map((u) => `@${u}`).join(", "),
          onclick: () => react(m, emoji, mine),
        },
        `${emoji} ${users.length}`,
      );
    }),
  );
}

function actions(m) {
  const link = (label, onclick) => h("button", { type: "button", class: "link", onclick }, label);
  return h(
    "div",
    { class: "message-actions" },
    link("Reply", () => startReply(m)),
    link("React", () => pickReaction(m)),
    m.outgoing && m.kind === "text" ? link("Edit", () => edit(m)) : null,
    m.outgoing ? link("Delete", () => remove(m)) : link("Report", () => report(m)),
  );
}

async function refresh() {
  const id = state.current;
  const { messages } = await rpc.call("history", { conversation_id: id, limit: 200 });
  if (state.current !== id) return;
  for (const m of messages) showMessage(m, { scroll: false });
}

async function react(m, emoji, remove) {
  try {
    await rpc.call("react", { message_id: m.message_id, emoji, remove });
    await refresh();
  } catch (err) {
    say(err.message);
  }
}

function pickReaction(m) {
  openDialog(
    "React",
    [
      h(
        "div",
        { class: "emoji-picker" },
        EMOJI.map((emoji) =>
          h(
            "button",
            {
              type: "button",
              "aria-label": `React with ${emoji}`,
              onclick: async () => {
                $("dialog").close();
                await react(m, emoji, false);
              },
            },
            emoji,
          ),
        ),
      ),
    ],
    null,
    null,
  );
}

function startReply(m) {
  state.replyTo = m;
  $("replying-text").textContent = `Replying to ${m.outgoing ? "yourself" : who(m.sender.user)}: ${
    m.text ?? m.file?.name ?? ""
  }`;
  $("replying").hidden = false;
  $("compose-text").focus();
}

function cancelReply() {
  state.replyTo = null;
  $("replying").hidden = true;
}
$("replying-cancel").addEventListener("click", cancelReply);

function edit(m) {
  const text = h("textarea", { name: "text", rows: 3, required: true });
  text.value = m.text ?? "";
  openDialog("Edit your message", [h("label", {}, "New text ", text)], "Save", async () => {
    showMessage(await rpc.call("edit", { message_id: m.message_id, text: text.value }));
  });
}

function remove(m) {
  openDialog(
    "Delete for everyone?",
    [h("p", {}, "The message disappears from every member's devices. This cannot be undone.")],
    "Delete",
    async () => {
      showMessage(await rpc.call("delete", { message_id: m.message_id }));
    },
  );
}

async function showEdits(m) {
  const { versions } = await rpc.call("editHistory", { message_id: m.message_id });
  openDialog(
    "Earlier versions",
    [h("ol", {}, versions.map((v) => h("li", {}, `${time(v.replaced_at)}: ${v.text}`)))],
    null,
    null,
  );
}

// Read receipts: "read up to" per reader of the open conversation.
function isRead(m) {
  const readers = state.readUpTo.get(m.conversation_id);
  if (!readers) return false;
  for (const id of readers.values()) {
    const local = state.localIds.get(id);
    if (local !== undefined && local >= m.local_id) return true;
  }
  return false;
}

async function markRead(m) {
  if (m.outgoing || document.hidden || state.lastRead.get(m.conversation_id) === m.message_id) {
    return;
  }
  state.lastRead.set(m.conversation_id, m.message_id);
  try {
    await rpc.call("markRead", { message_id: m.message_id });
  } catch (err) {
    say(`Read receipt: ${err.message}`);
  }
}

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("compose-text").value;
  if (!text.trim()) return;
  try {
    const m = state.replyTo
      ? await rpc.call("reply", { message_id: state.replyTo.message_id, text })
      : await rpc.call("send", { conversation_id: state.current, text });
    $("compose-text").value = "";
    cancelReply();
    stopTyping();
    showMessage(m);
  } catch (err) {
    say(`Not sent: ${err.message}`);
  }
});

// Typing notices: at most one every 3 s while typing, "stopped" after 5 s without a key.
$("compose-text").addEventListener("input", () => {
  const now = Date.now();
  if (now - state.typingSent > 3000) {
    state.typingSent = now;
    rpc.call("typing", { conversation_id: state.current, active: true }).catch(() => {});
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(stopTyping, 5000);
});

function stopTyping() {
  clearTimeout(state.typingTimer);
  if (state.typingSent) {
    state.typingSent = 0;
    rpc.call("typing", { conversation_id: state.current, active: false }).catch(() => {});
  }
}

const typingTimers = new Map();
function showTyping(event) {
  if (event.conversation_id !== state.current) return;
  const user = event.user.user;
  clearTimeout(typingTimers.get(user));
  if (event.active) typingTimers.set(user, setTimeout(() => showTyping({ ...event, active: false }), 8000));
  else typingTimers.delete(user);
  const names = [...typingTimers.keys()].map(who);
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

$("compose-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("compose-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (file) upload(file);
});

function upload(file) {
  const progress = $("upload-progress");
  const query = new URLSearchParams({ conversation_id: state.current, name: file.name });
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/files/send?${query}`);
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) progress.value = e.loaded / e.total;
  });
  xhr.addEventListener("loadend", () => {
    progress.hidden = true;
    let answer = {};
    try {
      answer = JSON.parse(xhr.responseText);
    } catch {
      answer = { message: "no answer" };
    }
    if (xhr.status === 200) showMessage(answer);
    else say(`File not sent: ${answer.message}`);
  });
  progress.value = 0;
  progress.hidden = false;
  say(`Sending ${file.name}…`);
  xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
  xhr.send(file);
}

async function download(m, progress) {
  progress.hidden = false;
  const response = await fetch(`/files/${m.message_id}`);
  if (!response.ok) {
    const answer = await response.json().catch(() => ({ message: response.statusText }));
    say(`Download failed: ${answer.message}`);
    progress.hidden = true;
    return;
  }
  const total = Number(response.headers.get("content-length")) || m.file.size || 1;
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    progress.value = received / total;
  }
  const url = URL.createObjectURL(new Blob(chunks, { type: "application/octet-stream" }));
  const a = h("a", { href: url, download: m.file.name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  say(`Downloaded ${m.file.name}`);
}

// --- events ------------------------------------------------------------------------------

function onEvent(event) {
  switch (event.type) {
    case "message_received":
    case "message_sent": {
      const m = event.message;
      if (m.conversation_id === state.current) showMessage(m);
      else if (event.type === "message_received" && !m.outgoing) {
        state.unread.set(m.conversation_id, (state.unread.get(m.conversation_id) || 0) + 1);
      }
      if (!state.conversations.has(m.conversation_id)) loadConversations();
      else renderConversations();
      break;
    }
    case "conversation_joined":
    case "conversation_updated":
    case "membership_changed":
      loadConversations();
      loadRequests();
      break;
    case "transparency_alarm":
      loadAlarms();
      break;
    case "device_changed":
      if (event.notice || event.change === "linked") say(describeDevice(event));
      loadConversations();
      break;
    case "call_updated":
      onCall(event);
      break;
    case "message_changed":
      showMessage(event.message, { scroll: false });
      break;
    case "read_up_to": {
      const readers = state.readUpTo.get(event.conversation_id) || new Map();
      readers.set(event.reader.user, event.message_id);
      state.readUpTo.set(event.conversation_id, readers);
      if (event.conversation_id === state.current) refresh();
      break;
    }
    case "typing":
      showTyping(event);
      break;
    case "delivery_failed":
      say(`A message could not be delivered or read: ${event.detail || event.reason}`);
      break;
    default:
      break;
  }
}

function describeDevice(event) {
  const name = event.device ? who(event.device.user) : "a contact";
  return `${name}: a device was ${event.change}.`;
}

// --- requests, alarms --------------------------------------------------------------------

async function loadRequests() {
  const { requests } = await rpc.call("listRequests");
  $("requests-section").hidden = requests.length === 0;
  replace(
    $("requests"),
    requests.map((r) =>
      h(
        "li",
        {},
        h("span", {}, `@${r.from}`),
        h("button", { type: "button", onclick: () => answerRequest("acceptRequest", r) }, "Accept"),
        h("button", { type: "button", onclick: () => answerRequest("blockRequest", r) }, "Block"),
      ),
    ),
  );
}

async function answerRequest(method, request) {
  try {
    await rpc.call(method, { request: request.conversation_id });
  } catch (err) {
    say(err.message);
  }
  await Promise.all([loadRequests(), loadConversations()]);
}

async function loadAlarms() {
  const { alarms } = await rpc.call("listAlarms");
  const box = $("alarms");
  box.hidden = alarms.length === 0;
  replace(
    box,
    alarms.map((a) => h("p", {}, h("strong", {}, "Security alarm: "), `${a.detail} ${a.advice}`)),
    alarms.length
      ? h("button", { type: "button", onclick: ackAlarms(alarms) }, "I have read this")
      : null,
  );
}

function ackAlarms(alarms) {
  return async () => {
    await rpc.call("ackAlarms", { ids: alarms.map((a) => a.id) });
    await loadAlarms();
  };
}

// --- dialogs -----------------------------------------------------------------------------

$("new-chat").addEventListener("click", () => {
  const user = field("Username", "user", { required: true });
  openDialog("New chat", [user.label], "Start", async () => {
    const conv = await rpc.call("getConversation", { user: user.input.value, create: true });
    await loadConversations();
    await openConversation(conv.id);
  });
});

$("new-group").addEventListener("click", () => {
  const name = field("Group name", "name", { required: true });
  const members = field("Members (usernames, separated by spaces or commas)", "members");
  openDialog("New group", [name.label, members.label], "Create", async () => {
    const conv = await rpc.call("createGroup", {
      name: name.input.value,
      members: splitNames(members.input.value),
    });
    await loadConversations();
    await openConversation(conv.id);
  });
});

function splitNames(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

$("conv-manage").addEventListener("click", async () => {
  const id = state.current;
  const { members } = await rpc.call("listMembers", { conversation_id: id });
  const rename = field("Name", "name", { value: state.conversations.get(id).name });
  const add = field("Add (usernames)", "add");
  const list = h(
    "ul",
    { class: "members" },
    members.map((m) =>
      h(
        "li",
        {},
        `@${m.user} (${m.devices.length} device${m.devices.length === 1 ? "" : "s"}) `,
        m.user === state.account.username
          ? null
          : h("label", {}, h("input", { type: "checkbox", name: "remove", value: m.user }), " remove"),
      ),
    ),
  );
  openDialog("Members", [list, add.label, rename.label], "Save", async (form) => {
    const remove = [...form.querySelectorAll("input[name=remove]:checked")].map((i) => i.value);
    if (rename.input.value && rename.input.value !== state.conversations.get(id).name) {
      await rpc.call("renameGroup", { conversation_id: id, name: rename.input.value });
    }
    if (splitNames(add.input.value).length) {
      await rpc.call("addMembers", { conversation_id: id, members: splitNames(add.input.value) });
    }
    if (remove.length) await rpc.call("removeMembers", { conversation_id: id, members: remove });
    await loadConversations();
  });
});

$("conv-safety").addEventListener("click", async () => {
  const conv = state.conversations.get(state.current);
  const user = conv.members.find((m) => m !== state.account.username);
  const number = await rpc.call("safetyNumber", { user });
  const { image } = await rpc.call("qrCode", { hex: number.qr_payload });
  const warning =
    number.status === "changed"
      ? h("p", { class: "error" }, `The safety number with @${user} changed since you verified it.`)
      : null;
  openDialog(
    `Safety number with @${user}`,
    [
      warning,
      h("pre", { class: "safety-number" }, number.display),
      h("img", { src: image, alt: "QR code of the safety number", width: 200, height: 200 }),
      h("p", {}, number.status === "verified"
        ? "You verified this contact; their keys have not changed since."
        : "Compare these digits with your contact in person or on a call."),
    ],
    "They match: mark as verified",
    async () => {
      await rpc.call("safetyNumber", { user, confirm: true });
      say(`You verified @${user}.`);
    },
  );
});

$("conv-block").addEventListener("click", () => {
  const conv = state.conversations.get(state.current);
  const user = conv.members.find((m) => m !== state.account.username);
  openDialog(
    `Block @${user}?`,
    [h("p", {}, "Their messages and calls will no longer reach any of your devices. " +
      "You can unblock them later.")],
    "Block",
    async () => {
      await rpc.call("block", { user });
      say(`You blocked @${user}.`);
    },
  );
});

$("conv-nickname").addEventListener("click", () => {
  const user = peer(state.conversations.get(state.current));
  const nickname = field(`Your name for @${user} (only on your devices; empty: none)`, "nickname", {
    value: state.nicknames.get(user) || "",
  });
  openDialog(`Nickname for @${user}`, [nickname.label], "Save", async () => {
    await rpc.call("setNickname", { user, nickname: nickname.input.value.trim() || null });
    await loadNicknames();
    renderConversations();
    renderHeader();
  });
});

$("search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("search-text").value.trim();
  if (!text) return;
  let answer;
  try {
    answer = await rpc.call("search", { text, limit: 50 });
  } catch (err) {
    say(`Search: ${err.message}`);
    return;
  }
  const items = answer.results.map((r) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            $("dialog").close();
            openConversation(r.message.conversation_id);
          },
        },
        h("strong", {}, conversationName(r.message.conversation_id)),
        ` · ${r.message.outgoing ? "you" : who(r.message.sender.user)} · ${time(r.message.sent_at)}`,
        highlighted(r.snippet, r.matches),
      ),
    ),
  );
  openDialog(
    `Search: ${text}`,
    [items.length ? h("ul", { class: "results" }, items) : h("p", {}, "Nothing found.")],
    null,
    null,
  );
});

function conversationName(id) {
  const conv = state.conversations.get(id);
  return conv ? title(conv) : "a conversation";
}

// The matches are code point offsets (Python's); a JS string counts UTF-16 units.
function highlighted(snippet, matches) {
  const chars = Array.from(snippet);
  const parts = [];
  let at = 0;
  for (const [start, end] of matches) {
    parts.push(chars.slice(at, start).join(""), h("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  parts.push(chars.slice(at).join(""));
  return h("span", { class: "snippet" }, parts);
}

$("conv-timer").addEventListener("change", async (e) => {
  const seconds = e.target.value ? Number(e.target.value) : null;
  try {
    await rpc.call("setDisappearing", { conversation_id: state.current, seconds });
    say(seconds ? "Disappearing messages on." : "Disappearing messages off.");
  } catch (err) {
    say(err.message);
  }
});

function report(m) {
  const reason = h(
    "select",
    { name: "reason" },
    ["spam", "harassment", "abuse", "other"].map((r) => h("option", { value: r }, r)),
  );
  openDialog(
    `Report a message from @${m.sender.user}`,
    [h("label", {}, "Reason ", reason),
     h("p", {}, "The moderators can verify that this person sent exactly this message.")],
    "Report",
    async () => {
      await rpc.call("report", { message_ids: [m.message_id], reason: reason.value });
      say("Reported.");
    },
  );
}

$("open-devices").addEventListener("click", async () => {
  const { devices } = await rpc.call("listDevices");
  const code = field("Link code shown on the new device", "code");
  const list = h(
    "ul",
    { class: "devices" },
    devices.map((d) =>
      h(
        "li",
        {},
        h("span", { class: "mono" }, d.fingerprint),
        ` ${d.name || ""}${d.this_device ? " (this device)" : ""}${d.revoked_at ? " (revoked)" : ""} `,
        d.this_device || d.revoked_at
          ? null
          : h("button", { type: "button", onclick: () => revoke(d) }, "Revoke"),
      ),
    ),
  );
  openDialog("Your devices", [list, h("h3", {}, "Approve a new device"), code.label], "Next", async () => {
    const link = await rpc.call("getLink", { code: code.input.value.trim() });
    approve(link);
  });
});

function approve(link) {
  openDialog(
    "Approve this device?",
    [
      h("p", {}, "Approve only if the new device shows exactly this fingerprint:"),
      h("p", { class: "mono big" }, link.fingerprint),
    ],
    "Same fingerprint: approve",
    async () => {
      await rpc.call("approveLink", { code: link.code, fingerprint: link.fingerprint });
      say("The new device is linked.");
    },
  );
}

function revoke(device) {
  openDialog(
    "Revoke this device?",
    [h("p", {}, "It will no longer receive your messages: "), h("p", { class: "mono" }, device.fingerprint)],
    "Revoke",
    async () => {
      await rpc.call("revokeDevice", { device_id: device.device_id });
      say("Device revoked.");
    },
  );
}

// --- calls -------------------------------------------------------------------------------

function onCall(event) {
  if (event.state === "ringing" && !state.call) {
    state.ringing = event;
    const conv = state.conversations.get(event.conversation_id);
    $("incoming-text").textContent = `Incoming call: ${conv ? title(conv) : "a conversation"}`;
    $("incoming").hidden = false;
    $("incoming-answer").focus();
    return;
  }
  if (state.ringing && state.ringing.call_id === event.call_id && event.state === "ended") {
    state.ringing = null;
    $("incoming").hidden = true;
  }
  if (state.call && state.call.id === event.call_id) {
    if (event.privacy_code) $("call-code").textContent = event.privacy_code;
    $("call-state").textContent = event.state;
    if (event.state === "ended") endCall(event.reason || "the call ended");
  }
}

async function joinCall(call, video) {
  $("call").hidden = false;
  $("call-title").textContent = `Call: ${title(state.conversations.get(call.conversation_id))}`;
  $("call-state").textContent = call.state;
  $("call-code").textContent = call.privacy_code || "…";
  $("call-self").parentElement.hidden = !video;
  const media = new CallMedia(call.call_id, {
    video,
    tiles: $("call-tiles"),
    onStats: showCallStats,
    onEnded: (reason) => endCall(reason),
  });
  state.call = { id: call.call_id, media };
  try {
    const stream = await media.start();
    if (video) $("call-self").srcObject = stream;
  } catch (err) {
    say(`The call could not start: ${err.message}`);
    await hangUp();
  }
  $("call-hangup").focus();
}

function showCallStats(message) {
  if (message.privacy_code) $("call-code").textContent = message.privacy_code;
  $("call-state").textContent = message.state;
  const counts = state.call.media.counts;
  const callEl = $("call");
  callEl.dataset.audioDecoded = counts.audioDecoded;
  callEl.dataset.videoDecoded = counts.videoDecoded;
  callEl.dataset.maxLevel = counts.maxLevel.toFixed(4);
  replace(
    $("call-stats"),
    message.stats.map((s) =>
      h("li", {},
        `@${s.user}: ${s.frames_sent ? `${s.frames_sent} sent, ` : ""}${s.frames_received} received, ` +
        `${s.frames_lost} lost, ${s.failed_to_decrypt} rejected` +
        (s.latency_p50_ms === null ? "" : `, latency ${s.latency_p50_ms.toFixed(0)} ms`) +
        `, ${s.bitrate_kbps} kbit/s`),
    ),
  );
}

function endCall(reason) {
  if (!state.call) return;
  state.call.media.close();
  state.call = null;
  $("call").hidden = true;
  for (const tile of [...$("call-tiles").children].slice(1)) tile.remove();
  $("call-self").srcObject = null;
  say(`Call ended: ${reason}`);
}

async function hangUp() {
  if (!state.call) return;
  const id = state.call.id;
  endCall("you hung up");
  try {
    await rpc.call("hangUp", { call_id: id });
  } catch (err) {
    say(err.message);
  }
}

async function startCall(video) {
  try {
    const call = await rpc.call("startCall", { conversation_id: state.current, video });
    await joinCall(call, video);
  } catch (err) {
    say(`No call: ${err.message}`);
  }
}

async function answer(video) {
  const ringing = state.ringing;
  state.ringing = null;
  $("incoming").hidden = true;
  try {
    const call = await rpc.call("answerCall", { call_id: ringing.call_id, video });
    await joinCall(call, video);
  } catch (err) {
    say(`Could not answer: ${err.message}`);
  }
}

$("conv-call").addEventListener("click", () => startCall(false));
$("conv-video").addEventListener("click", () => startCall(true));
$("incoming-answer").addEventListener("click", () => answer(false));
$("incoming-video").addEventListener("click", () => answer(true));
$("incoming-decline").addEventListener("click", async () => {
  const ringing = state.ringing;
  state.ringing = null;
  $("incoming").hidden = true;
  await rpc.call("declineCall", { call_id: ringing.call_id });
});
$("call-hangup").addEventListener("click", hangUp);
$("call-mute").addEventListener("click", (e) => {
  const muted = e.target.getAttribute("aria-pressed") !== "true";
  e.target.setAttribute("aria-pressed", String(muted));
  e.target.textContent = muted ? "Unmute" : "Mute";
  state.call?.media.setMuted(muted);
});
$("call-camera").addEventListener("click", (e) => {
  const off = e.target.getAttribute("aria-pressed") !== "true";
  e.target.setAttribute("aria-pressed", String(off));
  e.target.textContent = off ? "Camera on" : "Camera off";
  state.call?.media.setCameraOff(off);
});
