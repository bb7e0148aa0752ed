// Hash routes: the back button works and each screen has an address (#/household/ID).
export const route = $state({ path: location.hash.slice(1) || "/" });

window.addEventListener("hashchange", () => {
  route.path = location.hash.slice(1) || "/";
});

export function go(path: string) {
  location.hash = path;
}

/** The route's parts: "/household/abc" → ["household", "abc"]. */
export function parts(): string[] {
  return route.path.split("/").filter(Boolean);
}
