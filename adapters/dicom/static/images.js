// Rendered frames need the signed-in user's bearer token, which an <img src> cannot send:
// fetch them with it and show the bytes through an object URL (released when replaced).
import { authHeaders } from "/ui/static/fhir.js";

export async function authorizedImage(img, url) {
  img.dataset.src = url;
  const response = await fetch(url, { headers: { Accept: "image/png", ...authHeaders() } });
  if (!response.ok || img.dataset.src !== url) return; // failed, or a newer frame was asked for
  const previous = img.src;
  img.src = URL.createObjectURL(await response.blob());
  img.dataset.shown = url;
  if (previous.startsWith("blob:")) URL.revokeObjectURL(previous);
}
