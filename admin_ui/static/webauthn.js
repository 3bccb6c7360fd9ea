/* Passkeys: registration (security page) and sign-in (login page). No framework.
 * Buttons are wired by data attributes (the CSP forbids inline handlers):
 *   [data-passkey-register] data-options-url data-register-url data-csrf data-name-input
 *                           data-password-input (the current password, when asked)
 *   [data-passkey-login]    data-options-url data-verify-url data-csrf data-ia data-next
 * Errors go to the page's [data-passkey-error] element. */
(function () {
  "use strict";

  function toBuffer(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function showError(text) {
    var box = document.querySelector("[data-passkey-error]");
    if (box) { box.textContent = text; box.hidden = false; } else { window.alert(text); }
  }

  // A failure whose text the person may read: the server's translated message or the page's
  // own; anything else (a network error, a 403 page from an expired form) shows the page's.
  function failure(text) {
    var error = new Error(text || "failed");
    error.text = text || "";
    return error;
  }

  // ``expired``: the page's own words for a refused CSRF token (403 without a message: the
  // form outlived its session), which a reload mends where "try again" would not
  function post(url, csrf, body, expired) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          throw failure(data.error || (response.status === 403 ? expired : ""));
        }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: toBuffer(d.id), transports: d.transports };
    });
  }

  function creationOptions(o) {
    o.challenge = toBuffer(o.challenge);
    o.user.id = toBuffer(o.user.id);
    o.excludeCredentials = descriptors(o.excludeCredentials);
    return o;
  }

  function requestOptions(o) {
    o.challenge = toBuffer(o.challenge);
    o.allowCredentials = descriptors(o.allowCredentials);
    return o;
  }

  function extra(credential) {
    return {
      id: credential.id, rawId: toB64url(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults
        ? credential.getClientExtensionResults() : {}
    };
  }

  function register(button) {
    var d = button.dataset;
    var input = document.getElementById(d.nameInput);
    var name = input ? input.value.trim() : "";
    if (input && !name) { input.reportValidity(); return; }
    var secret = d.passwordInput ? document.getElementById(d.passwordInput) : null;
    if (secret && !secret.value) { secret.reportValidity(); return; }
    button.disabled = true;
    post(d.optionsUrl, d.csrf, secret ? { password: secret.value } : {}, d.expired)
      .then(function (options) {
      return navigator.credentials.create({ publicKey: creationOptions(options) })
        .catch(function () { throw failure(d.cancelled); });
    }).then(function (credential) {
      var out = extra(credential), r = credential.response;
      out.response = {
        clientDataJSON: toB64url(r.clientDataJSON),
        attestationObject: toB64url(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : []
      };
      return post(d.registerUrl, d.csrf, { name: name, credential: out }, d.expired);
    }).then(function (data) {
      window.location.assign(data.redirect || window.location.href);
    }).catch(function (error) {
      button.disabled = false;
      showError(error.text || d.cancelled || error.message);
    });
  }

  function signIn(button) {
    var d = button.dataset;
    button.disabled = true;
    post(d.optionsUrl, d.csrf, { ia: d.ia || "" }, d.expired).then(function (options) {
      return navigator.credentials.get({ publicKey: requestOptions(options) })
        .catch(function () { throw failure(d.cancelled); });
    }).then(function (credential) {
      var out = extra(credential), r = credential.response;
      out.response = {
        clientDataJSON: toB64url(r.clientDataJSON),
        authenticatorData: toB64url(r.authenticatorData),
        signature: toB64url(r.signature),
        userHandle: toB64url(r.userHandle)
      };
      return post(d.verifyUrl, d.csrf, { ia: d.ia || "", next: d.next || "", credential: out },
                  d.expired);
    }).then(function (data) {
      window.location.assign(data.redirect || "/");
    }).catch(function (error) {
      button.disabled = false;
      showError(error.text || d.cancelled || error.message);
    });
  }

  function wire(selector, action) {
    document.querySelectorAll(selector).forEach(function (button) {
      if (!window.PublicKeyCredential) {
        button.disabled = true;
        if (button.dataset.unsupported) { button.title = button.dataset.unsupported; }
        return;
      }
      button.addEventListener("click", function (event) {
        event.preventDefault();
        action(button);
      });
    });
  }

  wire("[data-passkey-register]", register);
  wire("[data-passkey-login]", signIn);
}());
