// A tek gateway client in plain Node.js: its own ZMTP 3.0 (NULL mechanism) and its own
// MessagePack, no packages. It proves that nothing in the protocol is Python-specific.
//
//   node client.mjs <path of the gateway's ipc socket>
//
// It runs a fixed script against the gateway and prints one JSON object with what it saw.

import net from "node:net";

// ---- MessagePack (the subset the protocol uses) ----------------------------------------------

function encode(value) {
  const out = [];
  const bytes = (arr) => { for (const b of arr) out.push(b); };
  const be = (n, width) => { for (let i = width - 1; i >= 0; i--) out.push(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn)); };
  const put = (v) => {
    if (v === null || v === undefined) return out.push(0xc0);
    if (v === false) return out.push(0xc2);
    if (v === true) return out.push(0xc3);
    if (typeof v === "number" && Number.isInteger(v)) {
      if (v >= 0 && v < 128) return out.push(v);
      if (v < 0 && v >= -32) return out.push(0x100 + v);
      if (v >= 0) { out.push(0xcf); return be(v, 8); }
      out.push(0xd3); return be(BigInt.asUintN(64, BigInt(v)), 8);
    }
    if (typeof v === "number") {
      const buf = Buffer.alloc(8); buf.writeDoubleBE(v); out.push(0xcb); return bytes(buf);
    }
    if (typeof v === "string") {
      const s = Buffer.from(v, "utf8");
      if (s.length < 32) out.push(0xa0 | s.length);
      else { out.push(0xdb); be(s.length, 4); }
      return bytes(s);
    }
    if (v instanceof Uint8Array) { out.push(0xc6); be(v.length, 4); return bytes(v); }
    if (Array.isArray(v)) { out.push(0xdd); be(v.length, 4); return v.forEach(put); }
    const keys = Object.keys(v);
    out.push(0xdf); be(keys.length, 4);
    for (const k of keys) { put(k); put(v[k]); }
  };
  put(value);
  return Buffer.from(out);
}

function decode(buf) {
  let at = 0;
  const u = (n) => { let x = 0n; for (let i = 0; i < n; i++) x = (x << 8n) | BigInt(buf[at++]); return x; };
  const num = (n) => Number(u(n));
  const str = (n) => { const s = buf.toString("utf8", at, at + n); at += n; return s; };
  const bin = (n) => { const b = buf.subarray(at, at + n); at += n; return b; };
  const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(get()); return a; };
  const map = (n) => { const m = {}; for (let i = 0; i < n; i++) { const k = get(); m[k] = get(); } return m; };
  const get = () => {
    const t = buf[at++];
    if (t === undefined) throw new Error("truncated msgpack");
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(num(1)); case 0xc5: return bin(num(2)); case 0xc6: return bin(num(4));
      case 0xca: { const v = buf.readFloatBE(at); at += 4; return v; }
      case 0xcb: { const v = buf.readDoubleBE(at); at += 8; return v; }
      case 0xcc: return num(1); case 0xcd: return num(2); case 0xce: return num(4); case 0xcf: return num(8);
      case 0xd0: { const v = buf.readInt8(at); at += 1; return v; }
      case 0xd1: { const v = buf.readInt16BE(at); at += 2; return v; }
      case 0xd2: { const v = buf.readInt32BE(at); at += 4; return v; }
      case 0xd3: { const v = buf.readBigInt64BE(at); at += 8; return Number(v); }
      case 0xd9: return str(num(1)); case 0xda: return str(num(2)); case 0xdb: return str(num(4));
      case 0xdc: return arr(num(2)); case 0xdd: return arr(num(4));
      case 0xde: return map(num(2)); case 0xdf: return map(num(4));
      default: throw new Error(`unsupported msgpack type 0x${t.toString(16)}`);
    }
  };
  return get();
}

// ---- ZMTP 3.0, NULL mechanism, as a DEALER ---------------------------------------------------

class Dealer {
  constructor(path, identity) {
    this.path = path;
    this.identity = Buffer.from(identity);
    this.buffer = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.greeted = false;
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.sock = net.createConnection(this.path);
      this.sock.on("error", reject);
      this.sock.on("data", (data) => this.onData(data));
      this.ready = resolve;
      const greeting = Buffer.alloc(64);
      greeting[0] = 0xff; greeting[9] = 0x7f; greeting[10] = 3; greeting[11] = 0;
      greeting.write("NULL", 12, "ascii");
      this.sock.write(greeting);
      const props = Buffer.concat([
        prop("Socket-Type", Buffer.from("DEALER")), prop("Identity", this.identity),
      ]);
      this.sock.write(command("READY", props));
    });
  }

  onData(data) {
    this.buffer = Buffer.concat([this.buffer, data]);
    if (!this.greeted) {
      if (this.buffer.length < 64) return;
      if (this.buffer[0] !== 0xff || this.buffer[9] !== 0x7f) throw new Error("not a ZMTP peer");
      this.buffer = this.buffer.subarray(64);
      this.greeted = true;
    }
    for (;;) {
      if (this.buffer.length < 2) return;
      const flags = this.buffer[0];
      const long = flags & 0x02;
      const head = long ? 9 : 2;
      if (this.buffer.length < head) return;
      const size = long ? Number(this.buffer.readBigUInt64BE(1)) : this.buffer[1];
      if (this.buffer.length < head + size) return;
      const body = this.buffer.subarray(head, head + size);
      this.buffer = this.buffer.subarray(head + size);
      if (flags & 0x04) this.onCommand(body);
      else this.onFrame(Buffer.from(body));
    }
  }

  onCommand(body) {
    const name = body.toString("ascii", 1, 1 + body[0]);
    if (name === "READY") this.ready();
    else if (name === "PING") {  // the gateway's heartbeat: answer with its context
      const context = body.subarray(1 + body[0] + 2);
      this.sock.write(command("PONG", context));
    } else if (name === "ERROR") throw new Error(`peer error: ${body.toString()}`);
  }

  onFrame(frame) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(frame); else this.frames.push(frame);
  }

  send(payload) {  // one message of one frame
    const size = payload.length;
    const head = size < 256 ? Buffer.from([0x00, size]) : Buffer.alloc(9);
    if (size >= 256) { head[0] = 0x02; head.writeBigUInt64BE(BigInt(size), 1); }
    this.sock.write(Buffer.concat([head, payload]));
  }

  recv(timeoutMs = 5000) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no frame in time")), timeoutMs);
      this.waiters.push((frame) => { clearTimeout(timer); resolve(frame); });
    });
  }

  close() { this.sock.end(); this.sock.destroy(); }
}

function prop(name, value) {
  const head = Buffer.alloc(1 + name.length + 4);
  head[0] = name.length; head.write(name, 1, "ascii");
  head.writeUInt32BE(value.length, 1 + name.length);
  return Buffer.concat([head, value]);
}

function command(name, body) {
  const inner = Buffer.concat([Buffer.from([name.length]), Buffer.from(name, "ascii"), body]);
  return Buffer.concat([Buffer.from([0x04, inner.length]), inner]);
}

// ---- the script ------------------------------------------------------------------------------

async function reply(dealer, id) {  // the reply to `id`, skipping events
  for (;;) {
    const message = decode(await dealer.recv());
    if (!("event" in message) && message.re === id) return message;
  }
}

const dealer = new Dealer(process.argv[2], "js-client");
await dealer.connect();
const seen = {};
let id = 0;
const call = async (type, payload = {}, extra = {}) => {
  id += 1;
  dealer.send(encode({ v: 1, id, type, payload, ...extra }));
  return reply(dealer, id);
};

seen.ping = await call("gateway.ping");
seen.status_state = (await call("gateway.status")).result.state;
dealer.send(Buffer.from([0xc1, 0x00, 0xff]));
seen.garbage = decode(await dealer.recv());
id += 1;
dealer.send(encode({ v: 1, id }));
seen.no_type = await reply(dealer, id);
seen.unknown = await call("nosuch.thing");
seen.first = await call("probe.append", { key: "from-js", value: [1, "two", null] }, { idem: "js-1" });
seen.again = await call("probe.append", { key: "from-js", value: [1, "two", null] }, { idem: "js-1" });
seen.hello = await call("hello", { client_id: "js", since_seq: 0, topics: ["probe.*"] });
seen.events = [];
while (seen.events.length < seen.hello.result.head_seq) {
  const message = decode(await dealer.recv());
  if (message.event === "probe.appended") seen.events.push(message);
  if (message.event === "probe.appended" && message.data.key === "from-js") break;
}
dealer.close();
process.stdout.write(JSON.stringify(seen) + "\n");
