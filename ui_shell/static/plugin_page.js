// A framed plugin page receives the shell URL's fragment (/ui/page?path=/plugins/x/#thread=1
// opens /plugins/x/#thread=1 in the frame), so links can point into a plugin page.
const frame = document.querySelector("iframe.plugin-frame");
if (frame && window.location.hash) {
  const src = frame.getAttribute("src").split("#")[0];
  frame.setAttribute("src", src + window.location.hash);
}
