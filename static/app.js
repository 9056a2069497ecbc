// The pages' script. Everything works without it (the form posts, the
// answer page is plain HTML); with it:
// - the upload page checks each file's type and size before sending, scales
//   photos larger than 1600 px down, shows the upload's progress and then
//   "analysing", and shows the answer in place: refreshing it never sends the
//   upload again (the answer lives in the page, not in a POST to repeat);
// - the webcam and microphone can be used (they put their file through the
//   same path);
// - on answer pages, the timeline reads out the column under the pointer or
//   the focus and seeks the player to it, and the annotated picture can be
//   saved as a PNG.
(function () {
  "use strict";

  const MAX_SIDE = 1600;
  const IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];
  const AUDIO_EXTENSIONS = ["wav", "flac", "mp3", "ogg", "oga", "m4a", "aac", "mp4"];
  const extension = (name) => (name.includes(".") ? name.split(".").pop().toLowerCase() : "");
  const megabytes = (bytes) => (bytes / (1024 * 1024)).toFixed(1) + " MB";
  const size = (bytes) => (bytes < 1024 * 1024 ? Math.max(1, Math.round(bytes / 1024)) + " KB" : megabytes(bytes));

  // 16-bit mono WAV of float samples: what the microphone records, and the
  // first minutes of a clip too long to send whole.
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

  // The first `seconds` of an audio file, as 16 kHz mono WAV (decoded by the
  // browser, which reads every format the server does).
  async function firstSeconds(file, seconds) {
    const context = new AudioContext();
    let decoded;
    try { decoded = await context.decodeAudioData(await file.arrayBuffer()); } finally { context.close(); }
    const rate = 16000;
    const offline = new OfflineAudioContext(1, Math.ceil(Math.min(decoded.duration, seconds) * rate), rate);
    const source = offline.createBufferSource();
    source.buffer = decoded;
    source.connect(offline.destination);
    source.start(0);
    const rendered = await offline.startRendering();
    const name = file.name.replace(/\.[^.]*$/, "") + "-first-" + Math.round(seconds / 60) + "-min.wav";
    return new File([encodeWav([rendered.getChannelData(0)], rate)], name, { type: "audio/wav" });
  }

  // --- the answer page --------------------------------------------------------
  function answerPage(root) {
    const readout = root.querySelector("#timeline-readout");
    const player = root.querySelector("audio.player");
    root.querySelectorAll(".timeline g.window").forEach((column) => {
      const show = () => {
        root.querySelectorAll(".timeline g.window.current").forEach((c) => c.classList.remove("current"));
        column.classList.add("current");
        if (readout) readout.textContent = column.getAttribute("aria-label");
      };
      const seek = () => {
        show();
        if (!player) return;
        player.currentTime = parseFloat(column.dataset.start) || 0;
        const playing = player.play();
        if (playing && playing.catch) playing.catch(() => {});
      };
      column.addEventListener("mouseenter", show);
      column.addEventListener("focus", show);
      column.addEventListener("click", seek);
      column.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); seek(); }
      });
    });

    // Tags on a photo shown small (a phone, a crowd) would shrink below
    // reading size with the picture: there each tag becomes just the face's
    // number, at a readable size that still fits its box (the list under the
    // photo gives the labels).
    const picture = root.querySelector(".photo img");
    const readableTags = () => {
      if (!picture || !picture.naturalWidth || !picture.clientWidth) return;
      const scale = picture.clientWidth / picture.naturalWidth;
      root.querySelectorAll(".photo svg text.face-tag").forEach((tag) => {
        if (!tag.dataset.full) {
          tag.dataset.full = tag.textContent;
          tag.dataset.size = tag.getAttribute("font-size");
          tag.dataset.y = tag.getAttribute("y");
        }
        const box = root.querySelector('.photo svg rect.face-box[data-face="' + tag.dataset.face + '"]');
        const size = parseFloat(tag.dataset.size);
        if (size * scale >= 9 || !box) {
          tag.textContent = tag.dataset.full;
          tag.setAttribute("font-size", tag.dataset.size);
          tag.setAttribute("y", tag.dataset.y);
          return;
        }
        const number = tag.dataset.face;
        const width = parseFloat(box.getAttribute("width"));
        const height = parseFloat(box.getAttribute("height"));
        const fits = Math.min((width * 0.9) / (0.62 * number.length), height * 0.6);
        const readable = Math.min(11 / scale, fits);
        tag.textContent = number;
        tag.setAttribute("font-size", readable.toFixed(1));
        tag.setAttribute("y", (parseFloat(box.getAttribute("y")) + readable * 1.05).toFixed(1));
      });
    };
    if (picture) {
      if (picture.complete) readableTags(); else picture.addEventListener("load", readableTags);
      window.addEventListener("resize", readableTags);
    }

    // A phantom face (a bookshelf, a shirt) can be put aside: its card is
    // dimmed and its box taken off the picture; one more click brings it back.
    root.querySelectorAll(".face-actions").forEach((actions) => { actions.hidden = false; });
    root.querySelectorAll("button.leave-out").forEach((button) => {
      button.addEventListener("click", () => {
        const n = button.dataset.face;
        const card = root.querySelector("#face-" + n);
        const out = !card.classList.contains("dismissed");
        card.classList.toggle("dismissed", out);
        root.querySelectorAll('.photo [data-face="' + n + '"], .face-tags [data-face="' + n + '"]')
          .forEach((e) => e.classList.toggle("left-out", out));
        button.textContent = out ? "Show this face again" : "Not a face: leave it out";
      });
    });

    const save = root.querySelector("#save-picture");
    if (save && picture) {
      save.hidden = false;
      save.addEventListener("click", () => {
        const canvas = document.createElement("canvas");
        canvas.width = picture.naturalWidth;
        canvas.height = picture.naturalHeight;
        const g = canvas.getContext("2d");
        g.drawImage(picture, 0, 0);
        const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300));
        root.querySelectorAll(".photo svg rect.face-box:not(.left-out)").forEach((box) => {
          g.strokeStyle = "#e2574c";
          g.lineWidth = line;
          g.strokeRect(+box.getAttribute("x"), +box.getAttribute("y"), +box.getAttribute("width"), +box.getAttribute("height"));
        });
        root.querySelectorAll(".photo svg text.face-tag:not(.left-out)").forEach((tag) => {
          g.lineWidth = line;
          g.strokeStyle = "#fff";
          g.fillStyle = "#e2574c";
          const text = tag.dataset.full || tag.textContent;
          const size = tag.dataset.size || tag.getAttribute("font-size");
          const y = tag.dataset.y || tag.getAttribute("y");
          g.font = "bold " + size + "px sans-serif";
          g.strokeText(text, +tag.getAttribute("x"), +y);
          g.fillText(text, +tag.getAttribute("x"), +y);
        });
        canvas.toBlob((blob) => {
          const link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = "emotion-ai-answer.png";
          document.body.appendChild(link);
          link.click();
          link.remove();
          setTimeout(() => URL.revokeObjectURL(link.href), 10000);
        }, "image/png");
      });
    }
  }

  // --- the upload page --------------------------------------------------------
  function uploadPage() {
    const zone = document.getElementById("drop-zone");
    const input = document.getElementById("file-input");
    const form = document.getElementById("upload-form");
    if (!zone || !input || !form) return;
    const label = zone.querySelector(".drop-text");
    const status = document.getElementById("capture-status");
    const progress = document.getElementById("upload-progress");
    const sendingText = document.getElementById("sending-text");
    const wholeFace = form.querySelector("input[name=whole_image_face]");
    const maxBytes = parseInt(form.dataset.maxBytes, 10) || 20 * 1024 * 1024;
    const say = (text) => { if (status) status.textContent = text; };
    const controls = () => Array.from(document.querySelectorAll("#upload-form input, #upload-form button, #capture button"));

    function sending(on, text) {
      form.classList.toggle("sending", on);
      controls().forEach((c) => { c.disabled = on; });
      if (!on) {
        progress.hidden = true;
        const snap = document.getElementById("snap-button");
        if (snap) snap.disabled = true;
      }
      sendingText.textContent = text || "";
    }

    // A file the server cannot read, said before sending it.
    function refusal(file) {
      const ext = extension(file.name);
      const known = IMAGE_EXTENSIONS.includes(ext) || AUDIO_EXTENSIONS.includes(ext);
      const type = file.type || "";
      const webm = ext === "webm" || ext === "opus" || /webm|opus/.test(type);
      const media = (type.startsWith("image/") || type.startsWith("audio/")) && !webm;
      if (file.size === 0) return file.name + " is empty.";
      if (!known && !media) {
        return file.name + " is not a photo or a voice clip this service reads. Images: " + form.dataset.accepted +
          ". Audio: " + form.dataset.acceptedAudio + (webm ? " (WebM/Opus is not among them)." : ".");
      }
      return null;
    }

    // Photos larger than MAX_SIDE are scaled down here: quicker to send, the
    // same faces. Formats the browser cannot draw (TIFF, say) go as they are.
    async function scaled(file) {
      const drawable = ["image/jpeg", "image/png", "image/webp"].includes(file.type);
      if (!drawable || typeof createImageBitmap !== "function") return file;
      let bitmap;
      try { bitmap = await createImageBitmap(file); } catch (e) { return file; }
      const side = Math.max(bitmap.width, bitmap.height);
      if (side <= MAX_SIDE) { bitmap.close(); return file; }
      const factor = MAX_SIDE / side;
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * factor);
      canvas.height = Math.round(bitmap.height * factor);
      const g = canvas.getContext("2d");
      g.imageSmoothingQuality = "high";
      g.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
      if (!blob) return file;
      return new File([blob], file.name.replace(/\.[^.]*$/, "") + ".jpg", { type: "image/jpeg" });
    }

    // Shows a page the server answered in place of this one; the address
    // stays the upload page's, so a refresh asks for a new upload.
    const uploadBody = document.body;
    const uploadTitle = document.title;
    function showPage(html, files) {
      const page = new DOMParser().parseFromString(html, "text/html");
      document.title = page.title;
      document.body.replaceWith(document.adoptNode(page.body));
      window.scrollTo(0, 0);
      history.pushState({ answer: true }, "", "/");
      answerPage(document);
      errorPage(files);
      fusionChoices(files);
    }

    // Sends `files` again from the upload page (restored as it was), with
    // the face numbered `face` (1 = largest) to be fused, if given.
    let fuseFace = null;
    function resend(files, asOneFace, face) {
      document.body.replaceWith(uploadBody);
      document.title = uploadTitle;
      if (wholeFace) wholeFace.checked = asOneFace;
      sending(false);
      fuseFace = face || null;
      prepareAndSend(files);
    }

    // On a fused answer, any other face can be the one fused with the voice.
    function fusionChoices(files) {
      document.querySelectorAll("button.fuse-this").forEach((button) => {
        button.addEventListener("click", () =>
          resend(files, wholeFace && wholeFace.checked, parseInt(button.dataset.face, 10)));
      });
    }

    // An error page keeps the upload's name (and picture) in view and offers
    // the next step the error allows, with the file still in hand.
    function errorPage(files) {
      const card = document.querySelector(".card.error");
      if (!card) return;
      const echo = document.getElementById("upload-echo");
      if (echo) {
        files.forEach((file) => {
          const item = document.createElement("figure");
          item.className = "echo-item";
          if (file.type.startsWith("image/")) {
            const thumb = document.createElement("img");
            thumb.src = URL.createObjectURL(file);
            thumb.alt = "the picture sent";
            thumb.className = "thumb";
            item.appendChild(thumb);
          }
          const caption = document.createElement("figcaption");
          caption.textContent = "Sent: " + file.name + " (" + size(file.size) + ")";
          item.appendChild(caption);
          echo.appendChild(item);
        });
        echo.hidden = false;
      }
      const steps = document.getElementById("next-steps");
      if (!steps) return;
      const offer = (text, action) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "next-step";
        button.textContent = text;
        button.addEventListener("click", async () => {
          button.disabled = true;
          button.textContent = "Preparing...";
          try { await action(); } catch (e) { button.textContent = "That did not work (" + e.message + ")"; }
        });
        steps.prepend(button);
      };
      const maxSeconds = parseFloat(form.dataset.maxSeconds) || 300;
      const isAudio = (f) => f.type.startsWith("audio/") || AUDIO_EXTENSIONS.includes(extension(f.name));
      switch (card.dataset.nextStep) {
        case "whole-face":
          offer("Read the whole picture as one face", () => resend(files, true));
          break;
        case "first-minutes": {
          const clip = files.find(isAudio);
          if (!clip) break;
          offer("Analyse the first " + Math.round(maxSeconds / 60) + " minutes", async () => {
            const cut = await firstSeconds(clip, maxSeconds - 1);
            resend(files.map((f) => (f === clip ? cut : f)), wholeFace && wholeFace.checked);
          });
          break;
        }
        case "again":
          offer("Try again", () => resend(files, wholeFace && wholeFace.checked));
          break;
        default:
      }
    }

    async function prepareAndSend(files) {
      files = files.slice(0, 2);
      if (!files.length) { say("Choose a photo or a clip first."); return; }
      for (const file of files) {
        const why = refusal(file);
        if (why) { say(why); return; }
      }
      sending(true, "Preparing...");
      const ready = [];
      for (const file of files) ready.push(await scaled(file));
      const total = ready.reduce((n, f) => n + f.size, 0);
      if (total > maxBytes) {
        sending(false);
        say((ready.length > 1 ? "Together the files are " : ready[0].name + " is ") + megabytes(total) +
          "; at most " + megabytes(maxBytes) + " are accepted. Send a shorter clip or a smaller picture.");
        return;
      }
      say("");
      const data = new FormData();
      ready.forEach((f) => data.append("file", f, f.name));
      if (wholeFace && wholeFace.checked) data.append("whole_image_face", "true");
      if (fuseFace) data.append("fuse_face", String(fuseFace));
      const request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("Accept", "text/html");
      progress.hidden = false;
      progress.value = 0;
      sendingText.textContent = "Sending: 0%";
      request.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const percent = Math.floor((100 * event.loaded) / event.total);
        progress.value = percent;
        sendingText.textContent = "Sending: " + percent + "%";
      });
      request.upload.addEventListener("load", () => {
        progress.value = 100;
        sendingText.textContent = "Analysing...";
        form.classList.add("analysing");
      });
      request.addEventListener("load", () => {
        const type = request.getResponseHeader("Content-Type") || "";
        if (type.startsWith("text/html")) { showPage(request.responseText, files); return; }
        sending(false);
        say("The server answered " + request.status + " without a page; try again.");
      });
      request.addEventListener("error", () => {
        sending(false);
        say("The upload failed: the connection was lost. Nothing was analysed; try again.");
      });
      request.send(data);
    }

    function submitFiles(chosen) {
      const files = new DataTransfer();
      chosen.slice(0, 2).forEach((file) => files.items.add(file));
      input.files = files.files;
      label.textContent = Array.from(input.files, (f) => f.name).join(" + ");
      prepareAndSend(Array.from(input.files));
    }
    const submitFile = (file) => submitFiles([file]);

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      fuseFace = null;
      prepareAndSend(Array.from(input.files));
    });
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

    const capture = document.getElementById("capture");
    const cameraButton = document.getElementById("camera-button");
    const snapButton = document.getElementById("snap-button");
    const recordButton = document.getElementById("record-button");
    const camera = document.getElementById("camera");
    const video = document.getElementById("camera-video");
    if (!capture || !cameraButton || !snapButton || !recordButton) return;
    // Hidden in the markup: without this script they could do nothing.
    capture.hidden = false;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraButton.disabled = recordButton.disabled = true;
      const both = document.getElementById("both-button");
      if (both) both.disabled = true;
      say("The webcam and microphone need a secure page (https:// or localhost); uploading a file still works.");
      return;
    }

    // Collects a stream's audio as float samples; stop() ends the capture and
    // gives the WAV file (or null if nothing came).
    function recordAudio(stream) {
      const context = new AudioContext();
      const source = context.createMediaStreamSource(stream);
      const processor = context.createScriptProcessor(4096, 1, 1);
      const chunks = [];
      processor.onaudioprocess = (event) => chunks.push(new Float32Array(event.inputBuffer.getChannelData(0)));
      source.connect(processor);
      processor.connect(context.destination);
      return () => {
        source.disconnect();
        processor.disconnect();
        const rate = context.sampleRate;
        context.close();
        if (!chunks.length) return null;
        return new File([encodeWav(chunks, rate)], "recording.wav", { type: "audio/wav" });
      };
    }

    // The video's current frame as a JPEG file.
    function snapshot() {
      const canvas = document.createElement("canvas");
      canvas.width = video.videoWidth || 640;
      canvas.height = video.videoHeight || 480;
      canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
      return new Promise((resolve) => canvas.toBlob(
        (blob) => resolve(new File([blob], "webcam.jpg", { type: "image/jpeg" })), "image/jpeg", 0.92));
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
    snapButton.addEventListener("click", async () => {
      if (!cameraStream || !video.videoWidth) { say("The webcam is not ready yet."); return; }
      const picture = await snapshot();
      stopCamera();
      submitFile(picture);
    });

    // --- microphone: raw samples encoded as 16-bit WAV in the page ------------
    // Browsers' MediaRecorder makes WebM/Opus, which the server cannot decode;
    // WAV of the raw samples is accepted everywhere.
    const MAX_SECONDS = 60;
    let recording = null;
    async function startRecording() {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
      } catch (e) {
        say("No microphone available (" + e.name + "): upload a clip instead.");
        return;
      }
      const stop = recordAudio(stream);
      const started = Date.now();
      const timer = setInterval(() => {
        const seconds = (Date.now() - started) / 1000;
        say("Recording: " + seconds.toFixed(0) + " s (at most " + MAX_SECONDS + " s). Speak, then stop.");
        if (seconds >= MAX_SECONDS) stopRecording();
      }, 250);
      recording = { stream, stop, timer };
      recordButton.textContent = "Stop and analyse";
      say("Recording... speak, then stop.");
    }
    function stopRecording() {
      if (!recording) return;
      const { stream, stop, timer } = recording;
      recording = null;
      clearInterval(timer);
      const clip = stop();
      stream.getTracks().forEach((t) => t.stop());
      recordButton.textContent = "Record my voice";
      if (!clip) { say("Nothing was recorded."); return; }
      say("");
      submitFile(clip);
    }
    recordButton.addEventListener("click", () => (recording ? stopRecording() : startRecording()));

    // --- face and voice at once: 4 s of speech, then a snapshot -------------
    const bothButton = document.getElementById("both-button");
    const BOTH_SECONDS = 4;
    if (bothButton) bothButton.addEventListener("click", async () => {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          video: { width: 640, height: 480 }, audio: { channelCount: 1, echoCancellation: false },
        });
      } catch (e) {
        say("No webcam or microphone available (" + e.name + "): upload a photo and a clip instead.");
        return;
      }
      controls().forEach((c) => { c.disabled = true; });
      video.srcObject = stream;
      camera.classList.add("on");
      const stop = recordAudio(stream);
      for (let left = BOTH_SECONDS; left > 0; left--) {
        say("Look at the camera and speak: " + left + " s...");
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      const picture = await snapshot();
      const clip = stop();
      stream.getTracks().forEach((t) => t.stop());
      camera.classList.remove("on");
      controls().forEach((c) => { c.disabled = false; });
      snapButton.disabled = true;
      say("");
      submitFiles(clip ? [picture, clip] : [picture]);
    });
  }

  // An answer page reached through Back after an in-place answer: show the
  // upload page the address names.
  window.addEventListener("popstate", () => location.reload());

  uploadPage();
  answerPage(document);
})();
