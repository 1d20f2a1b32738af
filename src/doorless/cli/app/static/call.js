// A call's media in the page: capture, WebCodecs encode (Opus, VP8) -> the local client, which
// encrypts with SFrame and talks to the relay; frames back from it -> WebCodecs decode -> play.
// The page never holds a call key (docs/app.md, "Calls in the window").

const AUDIO = 1;
const VIDEO = 2;
const KEYFRAME = 1;
const KEYFRAME_REQUEST = 3; // page -> app: ask a sender for a keyframe (src/doorless/cli/app/media.py)
const VIDEO_FPS = 15;
// A periodic keyframe only as a fallback: receivers ask for one when they cannot decode
// (docs/calls.md, "Keyframe requests"), so 5 s as in the CLI's calls.
const KEYFRAME_SECONDS = 5;
// The client rate-limits requests too; this only keeps the page from asking at the frame rate.
const REQUEST_INTERVAL_MS = 400;

export class CallMedia {
  constructor(callId, { video, onStats, onEnded, tiles }) {
    this.callId = callId;
    this.wantVideo = video;
    this.onStats = onStats;
    this.onEnded = onEnded;
    this.tiles = tiles; // element holding one tile per sender
    this.senders = new Map(); // index -> {user, audio, video, canvas, meter, counts}
    this.muted = false;
    this.cameraOff = false;
    this.counts = {
      audioSent: 0,
      videoSent: 0,
      audioDecoded: 0,
      videoDecoded: 0,
      maxLevel: 0,
      keyframeRequests: 0,
      keyframesForced: 0,
    };
    this.forceKeyframe = false; // the client relayed a keyframe request for this device
    this.closed = false;
  }

  async start() {
    this.audioContext = new AudioContext({ sampleRate: 48000 });
    this.playAt = 0;
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true },
      video: this.wantVideo ? { width: 320, height: 240, frameRate: VIDEO_FPS } : false,
    });
    this.ws = new WebSocket(`ws://${location.host}/media/${this.callId}`);
    this.ws.binaryType = "arraybuffer";
    this.ws.addEventListener("message", (e) => this.receive(e.data));
    this.ws.addEventListener("close", (e) => {
      if (!this.closed) this.onEnded(e.reason || "the call's connection ended");
    });
    await new Promise((resolve, reject) => {
      this.ws.addEventListener("open", resolve, { once: true });
      this.ws.addEventListener("error", () => reject(new Error("no media connection")), { once: true });
    });
    for (const track of this.stream.getAudioTracks()) this.pumpAudio(track);
    for (const track of this.stream.getVideoTracks()) this.pumpVideo(track);
    return this.stream;
  }

  send(stream, flags, chunk) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const out = new Uint8Array(2 + chunk.byteLength);
    out[0] = stream;
    out[1] = flags;
    chunk.copyTo(out.subarray(2));
    this.ws.send(out);
  }

  async pumpAudio(track) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    let encoder = null;
    while (!this.closed) {
      const { value: data, done } = await reader.read();
      if (done) break;
      if (!encoder) {
        encoder = new AudioEncoder({
          output: (chunk) => {
            this.counts.audioSent++;
            this.send(AUDIO, 0, chunk);
          },
          error: (e) => console.error("audio encoder", e),
        });
        encoder.configure({
          codec: "opus",
          sampleRate: data.sampleRate,
          numberOfChannels: data.numberOfChannels,
          bitrate: 32000,
          opus: { frameDuration: 20000 },
        });
      }
      if (!this.muted) encoder.encode(data);
      data.close();
    }
    if (encoder && encoder.state !== "closed") encoder.close();
  }

  async pumpVideo(track) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    let encoder = null;
    let frames = 0;
    let last = -Infinity;
    while (!this.closed) {
      const { value: frame, done } = await reader.read();
      if (done) break;
      const due = frame.timestamp - last >= 1e6 / VIDEO_FPS - 2000;
      if (this.cameraOff || !due) {
        frame.close();
        continue;
      }
      last = frame.timestamp;
      if (!encoder) {
        encoder = new VideoEncoder({
          output: (chunk) => {
            this.counts.videoSent++;
            this.send(VIDEO, chunk.type === "key" ? KEYFRAME : 0, chunk);
          },
          error: (e) => console.error("video encoder", e),
        });
        encoder.configure({
          codec: "vp8",
          width: frame.displayWidth,
          height: frame.displayHeight,
          bitrate: 300000,
          framerate: VIDEO_FPS,
          latencyMode: "realtime",
        });
      }
      // A keyframe when someone asked for one (they joined, or lost a fragment), and
      // periodically as a fallback.
      const keyFrame = this.forceKeyframe || frames % (VIDEO_FPS * KEYFRAME_SECONDS) === 0;
      if (this.forceKeyframe) this.counts.keyframesForced++;
      this.forceKeyframe = false;
      encoder.encode(frame, { keyFrame });
      frames++;
      frame.close();
    }
    if (encoder && encoder.state !== "closed") encoder.close();
  }

  receive(data) {
    if (typeof data === "string") {
      const message = JSON.parse(data);
      if (message.type === "sender") this.addSender(message);
      else if (message.type === "stats") this.onStats(message);
      else if (message.type === "keyframe") this.forceKeyframe = true;
      return;
    }
    const bytes = new Uint8Array(data);
    if (bytes.length < 5) return;
    const sender = this.senders.get((bytes[2] << 8) | bytes[3]);
    if (!sender) return;
    const payload = bytes.subarray(4);
    if (bytes[0] === AUDIO) this.decodeAudio(sender, payload);
    else if (bytes[0] === VIDEO) this.decodeVideo(sender, payload, (bytes[1] & KEYFRAME) !== 0);
  }

  requestKeyframe(sender) {
    const now = performance.now();
    if (now - sender.requestedAt < REQUEST_INTERVAL_MS) return;
    if (this.ws.readyState !== WebSocket.OPEN) return;
    sender.requestedAt = now;
    this.counts.keyframeRequests++;
    this.ws.send(new Uint8Array([KEYFRAME_REQUEST, 0, sender.index >> 8, sender.index & 0xff]));
  }

  newVideoDecoder(sender) {
    const decoder = new VideoDecoder({
      output: (frame) => {
        sender.canvas.width = frame.displayWidth;
        sender.canvas.height = frame.displayHeight;
        sender.canvas.getContext("2d").drawImage(frame, 0, 0);
        frame.close();
        this.counts.videoDecoded++;
      },
      error: (e) => {
        // A failed decoder is closed (WebCodecs): start a new one at the next keyframe.
        console.error("video decoder", e);
        if (this.closed) return;
        sender.video = this.newVideoDecoder(sender);
        sender.sawKey = false;
        this.requestKeyframe(sender);
      },
    });
    decoder.configure({ codec: "vp8" });
    return decoder;
  }

  addSender({ index, user }) {
    const canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 240;
    canvas.setAttribute("aria-label", `video of @${user}`);
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 1;
    meter.setAttribute("aria-label", `sound level of @${user}`);
    const label = document.createElement("span");
    label.textContent = `@${user}`;
    const tile = document.createElement("figure");
    tile.className = "tile";
    const caption = document.createElement("figcaption");
    caption.append(label, meter);
    tile.append(canvas, caption);
    this.tiles.append(tile);
    const sender = {
      index,
      user,
      canvas,
      meter,
      tile,
      sawKey: false,
      requestedAt: -Infinity,
      audio: null,
      video: null,
    };
    sender.audio = new AudioDecoder({
      output: (audio) => this.play(sender, audio),
      error: (e) => console.error("audio decoder", e),
    });
    sender.audio.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1 });
    sender.video = this.newVideoDecoder(sender);
    this.senders.set(index, sender);
  }

  decodeAudio(sender, payload) {
    if (sender.audio.state !== "configured") return;
    sender.audio.decode(
      new EncodedAudioChunk({ type: "key", timestamp: performance.now() * 1000, data: payload }),
    );
  }

  decodeVideo(sender, payload, key) {
    if (!key && !sender.sawKey) {
      this.requestKeyframe(sender); // a decoder starts at a keyframe: ask for one
      return;
    }
    sender.sawKey = true;
    if (sender.video.state !== "configured") return;
    sender.video.decode(
      new EncodedVideoChunk({
        type: key ? "key" : "delta",
        timestamp: performance.now() * 1000,
        data: payload,
      }),
    );
  }

  play(sender, audio) {
    const samples = new Float32Array(audio.numberOfFrames);
    audio.copyTo(samples, { planeIndex: 0, format: "f32-planar" });
    const rate = audio.sampleRate;
    audio.close();
    let sum = 0;
    for (const s of samples) sum += s * s;
    const level = Math.sqrt(sum / samples.length);
    sender.meter.value = Math.min(1, level * 4);
    this.counts.audioDecoded++;
    this.counts.maxLevel = Math.max(this.counts.maxLevel, level);
    const buffer = this.audioContext.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = this.audioContext.createBufferSource();
    source.buffer = buffer;
    source.connect(this.audioContext.destination);
    // A small fixed delay absorbs the network's jitter; a late frame plays at once.
    const now = this.audioContext.currentTime;
    this.playAt = Math.max(this.playAt, now + 0.06);
    source.start(this.playAt);
    this.playAt += buffer.duration;
  }

  setMuted(muted) {
    this.muted = muted;
  }

  setCameraOff(off) {
    this.cameraOff = off;
  }

  close() {
    this.closed = true;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.ws) this.ws.close();
    for (const sender of this.senders.values()) {
      for (const codec of [sender.audio, sender.video]) if (codec.state !== "closed") codec.close();
    }
    if (this.audioContext) this.audioContext.close();
  }
}
