// Front-channel logout: load each app's logout page in a hidden frame, then go on to the
// app's return address (#continue) once every frame has loaded, or after data-wait-ms.
// The frames are made here, listeners first, so that no load goes unheard; without
// script, the <noscript> frames load and the person follows the link.
(function () {
  var holder = document.getElementById("frontchannel");
  var next = document.getElementById("continue");
  if (!holder) return;
  var urls = holder.getAttribute("data-frames").split(" ");
  var waiting = urls.length;
  var gone = false;
  function go() {
    if (!gone && next) { gone = true; window.location.replace(next.href); }
  }
  urls.forEach(function (url) {
    var frame = document.createElement("iframe");
    frame.setAttribute("data-frontchannel", "");
    frame.setAttribute("title", "logout");
    frame.hidden = true;
    frame.addEventListener("load", function () { if (--waiting <= 0) go(); });
    frame.addEventListener("error", function () { if (--waiting <= 0) go(); });
    frame.src = url;
    holder.appendChild(frame);
  });
  window.setTimeout(go, Number(holder.getAttribute("data-wait-ms")) || 5000);
})();
