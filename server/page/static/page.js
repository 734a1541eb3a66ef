// Enhancements only: the page works without this file. "/" focuses the search box; Copy buttons copy an ID.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("q");
    if (event.key !== "/" || !box || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var typing = target && (target.isContentEditable || /^(input|textarea|select)$/i.test(target.tagName));
    if (typing) { return; }
    event.preventDefault();
    box.focus();
    box.select();
  });

  function copied(button, said) {
    var was = button.textContent;
    button.textContent = said;
    window.setTimeout(function () { button.textContent = was; }, 1500);
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    document.body.removeChild(area);
    return done;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("button.copy[data-copy]");
    Array.prototype.forEach.call(buttons, function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = button.getAttribute("data-copy") || "";
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(
            function () { copied(button, "Copied"); },
            function () { copied(button, fallbackCopy(text) ? "Copied" : "Select and copy"); }
          );
        } else {
          copied(button, fallbackCopy(text) ? "Copied" : "Select and copy");
        }
      });
    });
  });
})();
