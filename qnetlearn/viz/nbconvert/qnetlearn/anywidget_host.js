// A tiny, offline host for anywidget widgets in an exported notebook (qnetlearn template).
// It reads the widget state that nbconvert embedded, loads each anywidget's own front end
// (its _esm text, from that state) and calls its render() with a model that lives in the
// page: get/set/on work, save_changes and send do nothing (there is no kernel).
(function () {
  "use strict";

  function makeModel(values) {
    var listeners = {};
    return {
      get: function (k) { return values[k]; },
      set: function (k, v) {
        values[k] = v;
        (listeners["change:" + k] || []).slice().forEach(function (cb) { cb(); });
      },
      on: function (evt, cb) { (listeners[evt] = listeners[evt] || []).push(cb); },
      off: function (evt, cb) {
        if (!evt) { listeners = {}; return; }
        if (!cb) { delete listeners[evt]; return; }
        listeners[evt] = (listeners[evt] || []).filter(function (f) { return f !== cb; });
      },
      save_changes: function () {},
      send: function () {},
      widget_manager: null,
    };
  }

  function loadModule(esm) {
    var url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
    return import(url).catch(function () {
      // a page whose origin forbids module blobs: evaluate the module body instead
      var body = esm.replace(/export\s+default\s+/, "return ");
      return { default: new Function(body)() };
    });
  }

  var styled = {};
  function mount(values, el) {
    if (values._css && !styled[values._anywidget_id]) {
      styled[values._anywidget_id] = true;
      var st = document.createElement("style");
      st.textContent = values._css;
      document.head.appendChild(st);
    }
    return loadModule(values._esm).then(function (mod) {
      var w = mod.default;
      return Promise.resolve(typeof w === "function" ? w() : w).then(function (w) {
        var model = makeModel(values);
        return Promise.resolve(w.initialize ? w.initialize({ model: model }) : null)
          .then(function () { return w.render({ model: model, el: el }); });
      });
    });
  }

  function start() {
    var st = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
    if (!st) return;
    var state;
    try { state = JSON.parse(st.textContent).state || {}; } catch (e) { return; }
    var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
    Array.prototype.forEach.call(views, function (s) {
      var view;
      try { view = JSON.parse(s.textContent); } catch (e) { return; }
      var m = state[view.model_id];
      if (!m || m.model_module !== "anywidget" || !m.state || !m.state._esm) return;
      var el = document.createElement("div");
      el.className = "anywidget-host";
      s.parentNode.insertBefore(el, s.nextSibling);
      var fallback = s.parentNode.querySelector(".qnv-fallback");
      mount(m.state, el).then(function () {
        if (fallback) fallback.style.display = "none";
      }, function (err) {
        el.textContent = "could not show this widget offline: " + err;
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
