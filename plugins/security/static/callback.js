// The end of the shell's sign-in: check `state`, exchange the code (with the PKCE verifier)
// for tokens, keep the access token in sessionStorage, go back to the page that needed it.

const config = document.getElementById("login-config").dataset;
const status = document.getElementById("login-status");

async function finish() {
  const params = new URLSearchParams(window.location.search);
  const pending = JSON.parse(sessionStorage.getItem("fhirhub.pkce") || "null");
  sessionStorage.removeItem("fhirhub.pkce");
  if (params.get("error")) {
    status.textContent = `Sign-in failed: ${params.get("error_description") || params.get("error")}`;
    return;
  }
  if (!pending || params.get("state") !== pending.state) {
    status.textContent = "Sign-in failed: the answer does not belong to this sign-in. Try again.";
    return;
  }
  const response = await fetch(config.token, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: config.redirectUri,
      client_id: config.clientId,
      code_verifier: pending.verifier,
    }),
  });
  const answer = await response.json();
  if (!response.ok) {
    status.textContent = `Sign-in failed: ${answer.error_description || answer.error}`;
    return;
  }
  sessionStorage.setItem("fhirhub.token", answer.access_token);
  sessionStorage.setItem("fhirhub.tokenExpires", String(Date.now() + answer.expires_in * 1000));
  window.location.replace(sameOriginPath(pending.next));
}

// Only a path on this origin (the server checked it too): `/\\host` or `/\t/host` would leave.
function sameOriginPath(next) {
  if (typeof next !== "string" || !next.startsWith("/") || /[\\\s\u0000-\u001f]/.test(next)) {
    return "/";
  }
  const target = new URL(next, window.location.origin);
  return target.origin === window.location.origin ? target.pathname + target.search : "/";
}

finish().catch((error) => {
  status.textContent = `Sign-in failed: ${error}`;
});
