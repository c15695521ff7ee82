// The page follows the visual viewport: when an on-screen keyboard opens, the visual
// viewport shrinks (the layout viewport does not, on iOS and by default on Android), so
// the page's height is set to it (the `--viewport-*` properties, see style.css): the
// terminal refits to the rows left (its ResizeObserver) and the key bar, the page's last
// row, sits right above the keyboard.

export function followVisualViewport(): void {
  const viewport = window.visualViewport;
  if (!viewport) {
    return; // height: 100% it is
  }
  const root = document.documentElement.style;
  const apply = (): void => {
    root.setProperty("--viewport-height", `${viewport.height}px`);
    root.setProperty("--viewport-top", `${viewport.offsetTop}px`);
  };
  viewport.addEventListener("resize", apply);
  viewport.addEventListener("scroll", apply);
  apply();
}
