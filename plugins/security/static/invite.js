// The invitation token is the link's fragment (#...), which the browser never sends to a
// server: copy it into the form, kept across a failed attempt, and drop it from the address bar.
const field = document.getElementById("invite-token");
const fromLink = window.location.hash.slice(1);
if (fromLink) {
  sessionStorage.setItem("fhirhub.invite", fromLink);
  history.replaceState(null, "", window.location.pathname);
}
field.value = fromLink || sessionStorage.getItem("fhirhub.invite") || "";
document.getElementById("invite-form").addEventListener("submit", () => {
  field.value = field.value || sessionStorage.getItem("fhirhub.invite") || "";
});
