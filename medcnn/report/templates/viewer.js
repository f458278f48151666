"use strict";
// The slice viewers of a report: NiiVue, unpacked from the page itself (the bundle is
// gzip + base64 in <script id="niivue-bundle">; each viewer's volumes are .nii.gz, base64,
// in its <script class="viewer-data">). Nothing is fetched: the bundle runs from a blob: URL
// and the volumes are read from memory. A viewer that cannot start (no WebGL 2) says so in
// its status line and the static slices above it remain.
(function () {
  function bytes(text) {
    const s = atob(text.trim());
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  async function loadNiivue() {
    const packed = document.getElementById("niivue-bundle").textContent;
    const stream = new Blob([bytes(packed)]).stream().pipeThrough(new DecompressionStream("gzip"));
    const code = await new Response(stream).text();
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    await new Promise((ok, fail) => {
      const tag = document.createElement("script");
      tag.src = url;
      tag.onload = ok;
      tag.onerror = () => fail(new Error("the NiiVue bundle did not load"));
      document.head.appendChild(tag);
    });
    return window.niivue;
  }
  function say(viewer, state, text) {
    viewer.dataset.state = state;
    viewer.querySelector(".viewer-status").textContent = text;
  }
  async function show(lib, viewer) {
    const data = JSON.parse(viewer.querySelector("script.viewer-data").textContent);
    const nv = new lib.Niivue({
      backColor: [0, 0, 0, 1],
      isRadiologicalConvention: true,
      show3Dcrosshair: false,
      crosshairColor: [0.3, 0.8, 1, 0.8],
      crosshairWidth: 0.5,
      multiplanarForceRender: false,
    });
    await nv.attachToCanvas(viewer.querySelector("canvas"));
    const image = await lib.NVImage.loadFromUrl({
      url: "image.nii.gz", buffer: bytes(data.image).buffer, name: "image.nii.gz",
      colormap: "gray", cal_min: data.window[0], cal_max: data.window[1],
    });
    const mask = await lib.NVImage.loadFromUrl({
      url: "mask.nii.gz", buffer: bytes(data.mask).buffer, name: "mask.nii.gz",
      colormap: "red", opacity: 0.45, cal_min: 0.5, cal_max: Math.max(1, data.labels),
    });
    nv.addVolume(image);
    nv.addVolume(mask);
    nv.setSliceType(nv.sliceTypeMultiplanar);
    if (data.focus) {
      nv.scene.crosshairPos = nv.vox2frac(data.focus);
      nv.drawScene();
    }
    const position = viewer.querySelector(".viewer-position");
    nv.onLocationChange = (where) => { position.textContent = where.string || ""; };
    for (const button of viewer.querySelectorAll("button[data-slice]")) {
      button.addEventListener("click", () => nv.setSliceType(Number(button.dataset.slice)));
    }
    const opacity = viewer.querySelector("input.viewer-opacity");
    opacity.addEventListener("input", () => nv.setOpacity(1, Number(opacity.value) / 100));
    say(viewer, "ready", viewer.dataset.ready);
  }
  window.addEventListener("DOMContentLoaded", async () => {
    const viewers = document.querySelectorAll("div.viewer");
    if (!viewers.length) return;
    let lib;
    try {
      lib = await loadNiivue();
    } catch (e) {
      viewers.forEach((v) => say(v, "failed", v.dataset.failed + " (" + e.message + ")"));
      return;
    }
    for (const v of viewers) {
      try {
        await show(lib, v);
      } catch (e) {
        say(v, "failed", v.dataset.failed + " (" + e.message + ")");
        console.warn("slice viewer:", e);
      }
    }
  });
})();
