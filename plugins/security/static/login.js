// The UI shell's sign-in: OAuth 2 authorization code with PKCE (RFC 7636) from the browser,
// as the public client "fhirhub-ui". The verifier and state stay in sessionStorage (this tab).

const config = document.getElementById("login-config").dataset;

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function start() {
  if (!window.crypto || !crypto.subtle) {
    document.getElementById("login-status").textContent =
      "Signing in needs a secure context: open the hub over https (or on localhost).";
    return;
  }
  const verifier = randomText(48);
  const state = randomText(16);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("fhirhub.pkce", JSON.stringify({ verifier, state, next: config.next }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    scope: config.scope,
    state,
    aud: config.aud,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  window.location.assign(`${config.authorize}?${query}`);
}

start();
