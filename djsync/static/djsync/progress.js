/* djsync admin: poll a run's status until its step is done, then open the run;
   and let a form be submitted only once (no double apply). */
(function () {
  "use strict";

  function forms() {
    document.querySelectorAll("form[data-djsync-once]").forEach(function (form) {
      form.addEventListener("submit", function () {
        // Disable after the browser has collected the form's data.
        setTimeout(function () {
          form.querySelectorAll("[type=submit]").forEach(function (button) {
            button.disabled = true;
          });
        }, 0);
      });
    });
  }

  function poll(box) {
    var statusUrl = box.getAttribute("data-status-url");
    var delay = 700;

    function show(data) {
      ["label", "rows_read", "rows_applied", "progress_text"].forEach(function (name) {
        var el = box.querySelector('[data-field="' + name + '"]');
        if (el) { el.textContent = data[name]; }
      });
      // A known total fills the bar; otherwise it stays indeterminate (no value).
      var bar = box.querySelector("progress");
      var percent = data.progress && data.progress.percent;
      if (bar && typeof percent === "number") {
        bar.max = 100;
        bar.value = percent;
      } else if (bar) {
        bar.removeAttribute("value");
      }
    }

    function tick() {
      fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          show(data);
          if (data.done) {
            window.location.assign(data.url);
          } else {
            setTimeout(tick, delay);
          }
        })
        .catch(function () { setTimeout(tick, delay * 4); });
    }

    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    forms();
    var box = document.getElementById("djsync-progress");
    if (box) { poll(box); }
  });
})();
