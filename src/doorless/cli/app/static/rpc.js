// JSON-RPC 2.0 over the app's WebSocket (the daemon's methods, docs/json-rpc.md).
// The page never holds a key: it asks the local Doorless client and shows the answers.

export class RpcError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
    this.kind = (error.data && error.data.error) || "failed";
  }
}

export class Rpc {
  constructor(onNotification, onConnection) {
    this.nextId = 1;
    this.pending = new Map();
    this.onNotification = onNotification;
    this.onConnection = onConnection;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(`ws://${location.host}/rpc`);
    this.ws = ws;
    this.ready = new Promise((resolve) => ws.addEventListener("open", resolve, { once: true }));
    ws.addEventListener("open", () => this.onConnection(true));
    ws.addEventListener("message", (e) => this.receive(e.data));
    ws.addEventListener("close", () => {
      for (const { reject } of this.pending.values()) {
        reject(new RpcError({ code: -1, message: "the Doorless app stopped" }));
      }
      this.pending.clear();
      this.onConnection(false);
      setTimeout(() => this.connect(), 2000);
    });
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.id !== undefined && this.pending.has(message.id)) {
      const { resolve, reject } = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) reject(new RpcError(message.error));
      else resolve(message.result);
    } else if (message.method) {
      this.onNotification(message.method, message.params);
    }
  }

  async call(method, params = {}) {
    await this.ready;
    const id = this.nextId++;
    const answer = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    return answer;
  }
}
