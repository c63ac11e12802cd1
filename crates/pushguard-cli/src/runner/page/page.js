// The status page's only script, and it is optional: every page reads,
// refreshes and triggers without it. With it:
// - the page reloads itself every data-refresh seconds, but not while a form
//   field has focus or a token is typed and not yet used;
// - the API token is kept in sessionStorage (this tab only, gone when it
//   closes) only when the user ticks "remember"; never in a cookie.
"use strict";
(function () {
  var KEY = "pushguard-api-token";
  var token = document.getElementById("token");
  var remember = document.getElementById("remember");
  var form = document.getElementById("trigger");
  var store = null;
  try { store = window.sessionStorage; } catch (e) { store = null; }
  if (token && remember && store) {
    var kept = store.getItem(KEY);
    if (kept) { token.value = kept; remember.checked = true; }
    remember.addEventListener("change", function () {
      if (!remember.checked) { store.removeItem(KEY); }
    });
    if (form) {
      form.addEventListener("submit", function () {
        if (remember.checked && token.value) { store.setItem(KEY, token.value); }
        else { store.removeItem(KEY); }
      });
    }
  } else if (remember) {
    remember.disabled = true;
  }
  var every = parseInt(document.documentElement.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    window.setInterval(function () {
      var active = document.activeElement;
      var typing = active && (active.tagName === "INPUT" || active.tagName === "BUTTON");
      var unsaved = token && token.value && !(remember && remember.checked);
      if (!typing && !unsaved) { window.location.reload(); }
    }, every * 1000);
  }
})();
