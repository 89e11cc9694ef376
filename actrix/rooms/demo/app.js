// actrix rooms demo: the JSON room protocol (/rooms/ws) plus one relay-only
// RTCPeerConnection and data channel per peer. No build step, no libraries.

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, me: null, room: null, iceServers: [], peers: new Map(),
  media: null, seq: 0, serverOffset: null, timers: [],
};
// For automated checks (the browser test reads it); harmless for people.
window.actrixDemo = state;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function request(type, fields = {}) {
  const request_id = `r${++state.seq}`;
  send({ type, request_id, ...fields });
  return request_id;
}

function logLine(who, text, system = false) {
  const li = document.createElement("li");
  if (system) li.className = "system";
  if (who) {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    li.append(name);
  }
  li.append(document.createTextNode(text));
  $("log").append(li);
  $("log").scrollTop = $("log").scrollHeight;
}

// ---------------------------------------------------------------- peers

function peerRow(peer) {
  let row = document.querySelector(`tr[data-peer="${peer.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.peer = peer.id;
    row.innerHTML = "<td class=name></td><td class=channel></td><td class=rtt></td><td class=offset></td>";
    $("peers").querySelector("tbody").append(row);
  }
  return row;
}

function renderPeer(peer) {
  const row = peerRow(peer);
  row.querySelector(".name").textContent = peer.name;
  const channel = row.querySelector(".channel");
  const st = peer.channel ? peer.channel.readyState : "new";
  channel.textContent = st === "open" ? "open (relay)" : st;
  channel.className = `channel state-${st}`;
  row.dataset.state = st;
  row.querySelector(".rtt").textContent = peer.rtt == null ? "–" : `${peer.rtt.toFixed(1)} ms`;
  row.querySelector(".offset").textContent = peer.offset == null ? "–" : `${peer.offset >= 0 ? "+" : ""}${peer.offset.toFixed(1)} ms`;
  $("no-peers").classList.toggle("hidden", state.peers.size > 0);
}

function removePeer(id) {
  const peer = state.peers.get(id);
  if (!peer) return;
  state.peers.delete(id);
  peer.pc.close();
  document.querySelector(`tr[data-peer="${id}"]`)?.remove();
  document.querySelector(`video[data-peer="${id}"]`)?.remove();
  $("no-peers").classList.toggle("hidden", state.peers.size > 0);
  logLine(null, `${peer.name} left`, true);
}

function addPeer(info, initiator) {
  if (info.peer_id === state.me || state.peers.has(info.peer_id)) return state.peers.get(info.peer_id);
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: "relay" });
  const peer = {
    id: info.peer_id, name: info.display_name || info.peer_id, pc, channel: null,
    rtt: null, offset: null, polite: state.me > info.peer_id, makingOffer: false,
    received: [],
  };
  state.peers.set(peer.id, peer);
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) send({ type: "CANDIDATE", target_id: peer.id, payload: candidate.toJSON() });
  };
  pc.onnegotiationneeded = async () => {
    try {
      peer.makingOffer = true;
      await pc.setLocalDescription();
      send({ type: "OFFER", target_id: peer.id, payload: pc.localDescription.toJSON() });
    } catch (err) {
      console.warn("negotiation failed", err);
    } finally {
      peer.makingOffer = false;
    }
  };
  pc.ontrack = ({ streams }) => showVideo(peer, streams[0]);
  pc.ondatachannel = ({ channel }) => wireChannel(peer, channel);
  if (state.media) for (const track of state.media.getTracks()) pc.addTrack(track, state.media);
  if (initiator) wireChannel(peer, pc.createDataChannel("chat"));
  renderPeer(peer);
  return peer;
}

function wireChannel(peer, channel) {
  peer.channel = channel;
  channel.onopen = () => { renderPeer(peer); logLine(null, `data channel to ${peer.name} is open`, true); };
  channel.onclose = () => renderPeer(peer);
  channel.onmessage = ({ data }) => onChannelMessage(peer, data);
  renderPeer(peer);
}

function onChannelMessage(peer, data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return; }
  if (msg.kind === "chat" && typeof msg.text === "string") {
    peer.received.push(msg.text);
    logLine(peer.name, msg.text);
  } else if (msg.kind === "ping") {
    const t2 = Date.now();
    peer.channel.send(JSON.stringify({ kind: "pong", t1: msg.t1, t2, t3: Date.now() }));
  } else if (msg.kind === "pong") {
    // NTP-style: RTT less the peer's hold time; offset = peer clock − ours.
    const t4 = Date.now();
    peer.rtt = (t4 - msg.t1) - (msg.t3 - msg.t2);
    peer.offset = ((msg.t2 - msg.t1) + (msg.t3 - t4)) / 2;
    renderPeer(peer);
  }
}

function showVideo(peer, stream) {
  let video = document.querySelector(`video[data-peer="${peer.id}"]`);
  if (!video) {
    video = document.createElement("video");
    video.dataset.peer = peer.id;
    video.autoplay = true;
    video.playsInline = true;
    $("videos").append(video);
  }
  video.srcObject = stream;
}

async function onSignal(msg) {
  const from = msg.peer_id;
  let peer = state.peers.get(from);
  if (!peer) peer = addPeer({ peer_id: from }, false);
  const pc = peer.pc;
  try {
    if (msg.type === "CANDIDATE") {
      if (msg.payload) await pc.addIceCandidate(msg.payload);
      return;
    }
    const description = msg.payload;
    const collision = description.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
    if (collision && !peer.polite) return;
    await pc.setRemoteDescription(description);
    if (description.type === "offer") {
      await pc.setLocalDescription();
      send({ type: "ANSWER", target_id: from, payload: pc.localDescription.toJSON() });
    }
  } catch (err) {
    console.warn("signal failed", err);
  }
}

// ---------------------------------------------------------------- room protocol

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  switch (msg.type) {
    case "ACK":
      if (!state.me && msg.payload?.message === "connected") {
        state.me = msg.peer_id;
        const token = $("token").value.trim();
        const payload = { display_name: $("name").value.trim() };
        if (token) payload.token = token;
        request("JOIN", { room_id: $("room").value.trim(), payload });
      } else if (msg.room_id && msg.payload?.peers) {
        entered(msg);
      }
      break;
    case "PEER_JOINED":
      addPeer(msg.payload, false);
      logLine(null, `${msg.payload.display_name || msg.peer_id} joined`, true);
      break;
    case "PEER_LEFT":
      removePeer(msg.peer_id);
      break;
    case "OFFER": case "ANSWER": case "CANDIDATE":
      onSignal(msg);
      break;
    case "TIME_SYNC": {
      const t4 = Date.now();
      const { t1, t2, t3 } = msg.payload;
      const delay = ((t4 - t1) - (t3 - t2)) / 2;
      state.serverOffset = ((t2 - t1) + (t3 - t4)) / 2;
      $("server-clock").textContent = `server clock ${state.serverOffset >= 0 ? "+" : ""}${state.serverOffset.toFixed(1)} ms, one-way ${delay.toFixed(1)} ms`;
      break;
    }
    case "ERROR":
      setStatus(`${msg.payload.code}: ${msg.payload.message}`, true);
      if (!state.room) state.ws.close();
      break;
  }
}

function entered(ack) {
  state.room = ack.room_id;
  state.iceServers = ack.payload.ice_servers || [];
  $("room-name").textContent = ack.room_id;
  $("me").textContent = $("name").value.trim();
  $("join-card").classList.add("hidden");
  $("room-view").classList.remove("hidden");
  if (!state.iceServers.some((s) => (s.urls || []).some((u) => u.startsWith("turn")))) {
    logLine(null, "this server offers no TURN relay; data channels cannot open", true);
  }
  // The newcomer offers to everyone already there.
  for (const info of ack.payload.peers) addPeer(info, true);
  $("no-peers").classList.toggle("hidden", state.peers.size > 0);
  state.timers.push(setInterval(() => request("KEEP_ALIVE"), 20000));
  state.timers.push(setInterval(timeSync, 5000));
  state.timers.push(setInterval(pingPeers, 2000));
  timeSync();
}

function timeSync() { request("TIME_SYNC", { payload: { t1: Date.now() } }); }

function pingPeers() {
  for (const peer of state.peers.values()) {
    if (peer.channel?.readyState === "open") peer.channel.send(JSON.stringify({ kind: "ping", t1: Date.now() }));
  }
}

function join(event) {
  event.preventDefault();
  $("join").disabled = true;
  setStatus("Connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/rooms/ws`);
  state.ws = ws;
  ws.onmessage = onMessage;
  ws.onclose = (event) => {
    const wasIn = state.room;
    leaveLocal();
    setStatus(wasIn ? `Disconnected (${event.code}).` : $("status").textContent, !!wasIn);
  };
}

function leaveLocal() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
  for (const id of [...state.peers.keys()]) removePeer(id);
  state.ws = null; state.me = null; state.room = null;
  $("room-view").classList.add("hidden");
  $("join-card").classList.remove("hidden");
  $("join").disabled = false;
}

function chat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  let sent = 0;
  for (const peer of state.peers.values()) {
    if (peer.channel?.readyState === "open") { peer.channel.send(JSON.stringify({ kind: "chat", text })); sent++; }
  }
  logLine("you", sent ? text : `${text} (nobody connected)`);
  $("chat-input").value = "";
}

async function toggleMedia() {
  if (!navigator.mediaDevices?.getUserMedia) { logLine(null, "this browser offers no camera or microphone", true); return; }
  try {
    state.media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (err) {
    logLine(null, `camera/microphone unavailable: ${err.name}`, true);
    return;
  }
  $("media").disabled = true;
  const mine = document.createElement("video");
  mine.muted = true; mine.autoplay = true; mine.playsInline = true; mine.srcObject = state.media;
  $("videos").prepend(mine);
  for (const peer of state.peers.values()) {
    for (const track of state.media.getTracks()) peer.pc.addTrack(track, state.media);
  }
}

$("name").value = localStorage.getItem("actrix-demo-name") || `guest-${Math.floor(Math.random() * 900 + 100)}`;
$("name").addEventListener("change", () => localStorage.setItem("actrix-demo-name", $("name").value));
$("join-form").addEventListener("submit", join);
$("chat-form").addEventListener("submit", chat);
$("leave").addEventListener("click", () => { request("LEAVE"); state.ws?.close(1000); });
$("media").addEventListener("click", toggleMedia);
