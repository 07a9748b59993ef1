// qnetlearn replay player: steps through frames that Python rendered once (SVG strings).
// No dependencies and no network: the same code runs as the anywidget front end, inside a
// notebook's HTML output (RISE slides, exported HTML) and in a standalone page.
//
// data = {title, slide, n, start, layout: "single" | "grid" | "tabs",
//         views: [{name, title, frames: [svg], index: [frame per step],
//                  cursor: null | {x: [fraction per step], y0, y1}}],
//         captions: {texts, index}, labels: {texts, index}, chapters: [[step, text]]}
// host (optional) = {get(): step, set(step), on(callback(step))}: the widget model.

function qnvMount(el, data, host) {
  "use strict";
  var stop = null;
  var cancelled = false;
  el.textContent = "qnetlearn player: unpacking the frames\u2026";
  qnvUnpack(data).then(function (d) {
    if (!cancelled) stop = qnvBuild(el, d, host);
  }, function (err) {
    el.textContent = "qnetlearn player: " + err;
  });
  return function () { cancelled = true; if (stop) stop(); };
}

// Views whose frames travel gzip-compressed (frames_gz: base64) are unpacked here.
function qnvUnpack(data) {
  var views = data.views.map(function (v) { return Object.assign({}, v); });
  var out = Object.assign({}, data, { views: views });
  var todo = views.filter(function (v) { return v.frames_gz && !v.frames; });
  if (!todo.length) return Promise.resolve(out);
  if (typeof DecompressionStream === "undefined") {
    return Promise.reject(new Error("this browser cannot unpack the frames (no DecompressionStream)"));
  }
  return Promise.all(todo.map(function (v) {
    var bin = atob(v.frames_gz);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(function (t) {
      v.frames = JSON.parse(t);
      delete v.frames_gz;
    });
  })).then(function () { return out; });
}

function qnvBuild(el, data, host) {
  var n = data.n || 1;
  var root = document.createElement("div");
  root.className = "qnv-player qnv-live" + (data.slide ? " qnv-slide" : "") + " qnv-layout-" + (data.layout || "single");
  root.tabIndex = 0;
  // keys pressed inside the player are the player's: JupyterLab (Lumino) and RISE skip
  // their shortcuts for events coming from under this attribute
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", data.title || "qnetlearn player");

  function mk(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  var head = mk("div", "qnv-head");
  head.appendChild(mk("div", "qnv-title", data.title || ""));
  var counter = mk("div", "qnv-counter");
  head.appendChild(counter);
  root.appendChild(head);

  var label = mk("div", "qnv-label");
  var caption = mk("div", "qnv-caption");
  caption.setAttribute("aria-live", "polite");

  var tabs = null;
  var current = 0;            // the view shown in "tabs" layout
  var viewEls = [];
  var area = mk("div", "qnv-views");
  if (data.layout === "tabs" && data.views.length > 1) {
    tabs = mk("div", "qnv-tabs");
    data.views.forEach(function (v, j) {
      var b = mk("button", "qnv-tab", (j + 1) + " " + v.title);
      b.type = "button";
      b.setAttribute("data-view", v.name);
      b.addEventListener("click", function () { showView(j); root.focus(); });
      tabs.appendChild(b);
    });
    root.appendChild(tabs);
  }
  data.views.forEach(function (v) {
    var box = mk("div", "qnv-view");
    box.setAttribute("data-view", v.name);
    if (data.views.length > 1 && data.layout !== "tabs") box.appendChild(mk("div", "qnv-view-title", v.title));
    var body = mk("div", "qnv-body");
    box.appendChild(body);
    var cur = null;
    if (v.cursor) {
      cur = mk("div", "qnv-cursor");
      body.appendChild(cur);
    }
    area.appendChild(box);
    viewEls.push({box: box, body: body, cursor: cur, shown: -1});
  });
  root.appendChild(area);
  root.appendChild(label);
  root.appendChild(caption);

  var bar = mk("div", "qnv-controls");
  function button(cls, text, title, fn) {
    var b = mk("button", "qnv-btn " + cls, text);
    b.type = "button";
    b.title = title;
    b.setAttribute("aria-label", title);
    b.addEventListener("click", function () { fn(); root.focus(); });
    bar.appendChild(b);
    return b;
  }
  button("qnv-first", "\u21e4", "first step (Home)", function () { go(0); });
  button("qnv-prev", "\u25c0 back", "previous step (left arrow)", function () { go(step - 1); });
  var play = button("qnv-play", "\u25b6 play", "play / pause (space)", function () { toggle(); });
  button("qnv-next", "next \u25b6", "next step (right arrow)", function () { go(step + 1); });
  button("qnv-last", "\u21e5", "last step (End)", function () { go(n - 1); });
  var slider = mk("input", "qnv-slider");
  slider.type = "range";
  slider.min = 0;
  slider.max = Math.max(0, n - 1);
  slider.step = 1;
  slider.setAttribute("aria-label", "step");
  slider.addEventListener("input", function () { go(parseInt(slider.value, 10)); });
  bar.appendChild(slider);
  var speed = mk("select", "qnv-speed");
  [1, 2, 4, 8, 16].forEach(function (s) {
    var o = mk("option", null, s + " steps/s");
    o.value = s;
    if (s === 4) o.selected = true;
    speed.appendChild(o);
  });
  speed.title = "playing speed";
  bar.appendChild(speed);
  if (data.chapters && data.chapters.length > 1) {
    var jump = mk("select", "qnv-jump");
    jump.appendChild(mk("option", null, "jump to\u2026"));
    data.chapters.forEach(function (c) {
      var o = mk("option", null, c[1]);
      o.value = c[0];
      jump.appendChild(o);
    });
    jump.addEventListener("change", function () {
      if (jump.value !== "") go(parseInt(jump.value, 10));
      jump.selectedIndex = 0;
      root.focus();
    });
    bar.appendChild(jump);
  }
  root.appendChild(bar);

  function text(table, i) {
    if (!table) return "";
    var k = table.index ? table.index[i] : i;
    return table.texts[k] === undefined ? "" : table.texts[k];
  }

  function showView(j) {
    current = j;
    viewEls.forEach(function (ve, k) { ve.box.style.display = k === j ? "" : "none"; });
    if (tabs) {
      Array.prototype.forEach.call(tabs.children, function (b, k) {
        b.classList.toggle("qnv-tab-on", k === j);
      });
    }
  }

  var step = -1;
  function render(i) {
    data.views.forEach(function (v, j) {
      var ve = viewEls[j];
      var f = v.index[i];
      if (ve.shown !== f) {
        var keep = ve.cursor;
        ve.body.innerHTML = v.frames[f];
        if (keep) ve.body.appendChild(keep);
        ve.shown = f;
      }
      if (ve.cursor) {
        var c = v.cursor;
        ve.cursor.style.left = (100 * c.x[i]) + "%";
        ve.cursor.style.top = (100 * c.y0) + "%";
        ve.cursor.style.height = (100 * (c.y1 - c.y0)) + "%";
      }
    });
    counter.textContent = "step " + i + " of " + (n - 1);
    label.textContent = text(data.labels, i);
    caption.textContent = text(data.captions, i);
    slider.value = i;
    root.setAttribute("data-step", i);
  }

  function go(i, fromHost) {
    i = Math.max(0, Math.min(n - 1, i | 0));
    if (i === step) return;
    step = i;
    render(i);
    if (host && !fromHost) {
      try { host.set(i); } catch (e) { /* the kernel is gone: keep stepping here */ }
    }
  }

  var timer = null;
  function toggle() {
    if (timer) {
      clearInterval(timer);
      timer = null;
      play.textContent = "\u25b6 play";
      root.classList.remove("qnv-playing");
      return;
    }
    if (step >= n - 1) go(0);
    play.textContent = "\u23f8 pause";
    root.classList.add("qnv-playing");
    timer = setInterval(function () {
      if (step >= n - 1) { toggle(); return; }
      go(step + 1);
    }, 1000 / (parseInt(speed.value, 10) || 4));
  }
  speed.addEventListener("change", function () { if (timer) { toggle(); toggle(); } });

  root.addEventListener("keydown", function (ev) {
    var t = ev.target && ev.target.tagName;
    if (t === "SELECT" || (t === "INPUT" && ev.target.type !== "range")) return;
    var handled = true;
    if (ev.key === "ArrowRight" || ev.key === "PageDown") go(step + 1);
    else if (ev.key === "ArrowLeft" || ev.key === "PageUp") go(step - 1);
    else if (ev.key === "Home") go(0);
    else if (ev.key === "End") go(n - 1);
    else if (ev.key === " ") toggle();
    else if (tabs && /^[1-9]$/.test(ev.key) && +ev.key <= data.views.length) showView(+ev.key - 1);
    else handled = false;
    if (handled) { ev.preventDefault(); ev.stopPropagation(); }
  });

  el.innerHTML = "";
  el.appendChild(root);
  if (tabs) showView(0);
  var first = host ? host.get() : (data.start || 0);
  go(typeof first === "number" ? first : 0, true);
  if (host) host.on(function (i) { go(i, true); });
  return function () { if (timer) clearInterval(timer); };
}
