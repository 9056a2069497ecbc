// Upload page: drag and drop, webcam snapshot and microphone recording. Each
// puts its file(s) into the form's file input and submits the form, so every
// way in goes through the same endpoint and answer page. Two files (a photo
// and a clip of one person) are sent together and fused by the server.
(function () {
  "use strict";
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const form = document.getElementById("upload-form");
  if (!zone || !input || !form) return;
  const label = zone.querySelector(".drop-text");
  const status = document.getElementById("capture-status");
  const say = (text) => { if (status) status.textContent = text; };

  function submitFiles(chosen) {
    const files = new DataTransfer();
    chosen.slice(0, 2).forEach((file) => files.items.add(file));
    input.files = files.files;
    label.textContent = Array.from(input.files, (f) => f.name).join(" + ");
    form.classList.add("sending");
    form.requestSubmit();
  }
  const submitFile = (file) => submitFiles([file]);

  form.addEventListener("submit", () => form.classList.add("sending"));
  input.addEventListener("change", () => {
    if (input.files.length) label.textContent = Array.from(input.files, (f) => f.name).join(" + ");
  });
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    submitFiles(Array.from(event.dataTransfer.files));
  });

  const cameraButton = document.getElementById("camera-button");
  const snapButton = document.getElementById("snap-button");
  const recordButton = document.getElementById("record-button");
  const camera = document.getElementById("camera");
  const video = document.getElementById("camera-video");
  if (!cameraButton || !snapButton || !recordButton) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    cameraButton.disabled = recordButton.disabled = true;
    say("The webcam and microphone need a secure page (https:// or localhost); uploading a file still works.");
    return;
  }

  // --- webcam snapshot: a JPEG of the current frame -------------------------
  let cameraStream = null;
  function stopCamera() {
    if (cameraStream) cameraStream.getTracks().forEach((t) => t.stop());
    cameraStream = null;
    camera.classList.remove("on");
    snapButton.disabled = true;
    cameraButton.textContent = "Use the webcam";
  }
  cameraButton.addEventListener("click", async () => {
    if (cameraStream) { stopCamera(); say(""); return; }
    try {
      cameraStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (e) {
      say("No webcam available (" + e.name + "): upload a photo instead.");
      return;
    }
    video.srcObject = cameraStream;
    camera.classList.add("on");
    snapButton.disabled = false;
    cameraButton.textContent = "Close the webcam";
    say("Look at the camera, then take the picture.");
  });
  snapButton.addEventListener("click", () => {
    if (!cameraStream || !video.videoWidth) { say("The webcam is not ready yet."); return; }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      stopCamera();
      say("Analysing the picture...");
      submitFile(new File([blob], "webcam.jpg", { type: "image/jpeg" }));
    }, "image/jpeg", 0.92);
  });

  // --- microphone: raw samples encoded as 16-bit WAV in the page ------------
  // Browsers' MediaRecorder makes WebM/Opus, which the server cannot decode;
  // WAV of the raw samples is accepted everywhere.
  const MAX_SECONDS = 60;
  let recording = null;
  function encodeWav(chunks, rate) {
    const length = chunks.reduce((n, c) => n + c.length, 0);
    const view = new DataView(new ArrayBuffer(44 + 2 * length));
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF"); view.setUint32(4, 36 + 2 * length, true); text(8, "WAVE");
    text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * length, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++, offset += 2) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      }
    }
    return new Blob([view], { type: "audio/wav" });
  }
  async function startRecording() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
    } catch (e) {
      say("No microphone available (" + e.name + "): upload a clip instead.");
      return;
    }
    const context = new AudioContext();
    const source = context.createMediaStreamSource(stream);
    const processor = context.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    processor.onaudioprocess = (event) => chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
    source.connect(processor);
    processor.connect(context.destination);
    const started = Date.now();
    const timer = setInterval(() => {
      const seconds = (Date.now() - started) / 1000;
      say("Recording: " + seconds.toFixed(0) + " s (at most " + MAX_SECONDS + " s). Speak, then stop.");
      if (seconds >= MAX_SECONDS) stopRecording();
    }, 250);
    recording = { stream, context, processor, source, chunks, timer };
    recordButton.textContent = "Stop and analyse";
    say("Recording... speak, then stop.");
  }
  function stopRecording() {
    if (!recording) return;
    const { stream, context, processor, source, chunks, timer } = recording;
    recording = null;
    clearInterval(timer);
    source.disconnect();
    processor.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    const rate = context.sampleRate;
    context.close();
    recordButton.textContent = "Record my voice";
    if (!chunks.length) { say("Nothing was recorded."); return; }
    say("Analysing the recording...");
    submitFile(new File([encodeWav(chunks, rate)], "recording.wav", { type: "audio/wav" }));
  }
  recordButton.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
})();
