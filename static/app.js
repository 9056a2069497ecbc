// Upload page: drag and drop onto the drop zone fills the file input and submits.
(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const form = document.getElementById("upload-form");
  if (!zone || !input || !form) return;
  const label = zone.querySelector(".drop-text");
  input.addEventListener("change", () => {
    if (input.files.length) label.textContent = input.files[0].name;
  });
  ["dragenter", "dragover"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    label.textContent = input.files[0].name;
    form.requestSubmit();
  });
})();
