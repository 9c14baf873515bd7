/* Refrain's pages work without this file; it only names the taste map's point under the pointer or
   the keyboard focus in the caption below the map (a screen reader hears the link's own label). */
(function () {
  "use strict";
  function name(event) {
    var link = event.target.closest && event.target.closest(".map a");
    var caption = document.getElementById("map-caption");
    if (!link || !caption) return;
    var title = link.getAttribute("aria-label") || (link.querySelector("title") || {}).textContent || "";
    caption.textContent = title;
  }
  document.addEventListener("focusin", name);
  document.addEventListener("mouseover", name);
})();
