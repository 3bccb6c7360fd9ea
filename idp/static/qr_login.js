/* QR-code sign-in on the computer: get a ticket, show its QR code, poll its status and,
 * once a phone approved, offer the redeem form as "continue as <masked name>" (never
 * submitted by itself: a bystander's phone may have scanned the code first). No framework; wired by data attributes
 * (the CSP forbids inline scripts):
 *   [data-qr-login] data-ticket-url data-status-url data-csrf data-ia [data-ticket] data-failed
 *     [data-qr-image] [data-qr-status] form[data-qr-redeem] [data-qr-refresh] [data-qr-fallback]
 * The panel gets data-qr-url (the scan URL) and data-qr-state (the last status seen).
 * A panel without data-ticket (the login page) fetches one, but only on a wide screen: on a
 * phone the person scans, they do not show codes (the fallback link stays there). */
(function () {
  "use strict";

  var POLL_MS = 2000;

  function start(panel) {
    var d = panel.dataset;
    var image = panel.querySelector("[data-qr-image]");
    var status = panel.querySelector("[data-qr-status]");
    var form = panel.querySelector("form[data-qr-redeem]");
    var refresh = panel.querySelector("[data-qr-refresh]");
    var fallback = panel.querySelector("[data-qr-fallback]");
    var timer = null;

    function say(text) {
      if (text) { status.textContent = text; status.hidden = false; }
    }

    function stop() {
      if (timer) { window.clearTimeout(timer); timer = null; }
    }

    function later(ms) {
      stop();
      timer = window.setTimeout(poll, ms);
    }

    function finish(text) {  // expired, used, refused, another browser: offer a new code
      stop();
      say(text);
      image.hidden = true;
      form.hidden = true;
      refresh.hidden = false;
    }

    function poll() {
      timer = null;
      fetch(d.statusUrl + "?t=" + encodeURIComponent(d.ticket), {
        credentials: "same-origin", headers: { Accept: "application/json" }
      }).then(function (response) {
        return response.json();
      }).then(function (data) {
        say(data.message);
        panel.setAttribute("data-qr-state", data.status || "");
        if (data.status === "approved") {
          // never by itself: someone else's phone may have scanned first ("continue as ...")
          form.querySelector("[name=t]").value = d.ticket;
          var button = form.querySelector("button");
          if (data["continue"]) { button.textContent = data["continue"]; }
          form.querySelector("[name=approver]").value = data.approver || "";
          form.hidden = false;
          button.focus();
        } else if (data.final) {
          finish(data.message);
        } else {
          later(POLL_MS);
        }
      }).catch(function () {
        later(POLL_MS * 2);  // a network hiccup: keep trying until the ticket expires
      });
    }

    function load() {
      stop();
      refresh.hidden = true;
      fetch(d.ticketUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": d.csrf },
        body: JSON.stringify({ ia: d.ia || "" })
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok || !data.ticket) { throw new Error(data.error || d.failed); }
          return data;
        });
      }).then(function (data) {
        d.ticket = data.ticket;
        d.qrUrl = data.scan_url;
        image.innerHTML = data.svg;  // made by the server (segno), same origin
        image.hidden = false;
        form.querySelector("[name=t]").value = data.ticket;
        if (fallback) { fallback.hidden = true; }
        say(data.message);
        later(POLL_MS);
      }).catch(function (error) {
        finish(error.message || d.failed);
      });
    }

    refresh.querySelector("button").addEventListener("click", function (event) {
      event.preventDefault();
      load();
    });
    if (d.ticket) {
      later(POLL_MS);
    } else if (window.fetch && window.matchMedia("(min-width: 600px)").matches) {
      load();
    }
  }

  document.querySelectorAll("[data-qr-login]").forEach(start);
}());
