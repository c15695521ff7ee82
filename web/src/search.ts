// Searching the scrollback: a small box (#search) opened by Ctrl+Shift+F or the ⌕ button.
// Enter finds the next match (upwards from the bottom, as the newest output is there),
// Shift+Enter the previous one, Esc (or Ctrl+Shift+F again) closes it and gives the keys back to the terminal.
// The match is selected and scrolled to; every match is highlighted (@xterm/addon-search).
import type { Terminal } from "@xterm/xterm";
import type { ISearchOptions, SearchAddon } from "@xterm/addon-search";
import { shortcut } from "./keys";

const OPTIONS: ISearchOptions = {
  caseSensitive: false,
  decorations: {
    matchBackground: "#3d5a1f",
    matchBorder: "#6b8f3a",
    matchOverviewRuler: "#bae67e",
    activeMatchBackground: "#8a6d1f",
    activeMatchBorder: "#ffd580",
    activeMatchColorOverviewRuler: "#ffd580",
  },
};

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

export class SearchBox {
  private readonly box = $("search");
  private readonly input = $("search-input") as HTMLInputElement;
  private readonly count = $("search-count");

  constructor(
    private readonly term: Terminal,
    private readonly addon: SearchAddon,
  ) {
    addon.onDidChangeResults(({ resultIndex, resultCount }) => {
      // resultIndex is -1 past the highlight limit: the count is still right
      this.count.textContent =
        resultCount === 0 ? "no match" : `${resultIndex >= 0 ? resultIndex + 1 : "?"}/${resultCount}`;
      this.box.dataset.matches = String(resultCount);
    });
    this.input.addEventListener("input", () => this.find("previous", true));
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.find(event.shiftKey ? "next" : "previous", false);
      } else if (event.key === "Escape" || shortcut(event) === "search") {
        event.preventDefault();
        this.close();
      }
    });
    $("search-prev").addEventListener("click", () => this.find("previous", false));
    $("search-next").addEventListener("click", () => this.find("next", false));
    $("search-close").addEventListener("click", () => this.close());
  }

  open(): void {
    this.box.hidden = false;
    this.input.focus();
    this.input.select();
    if (this.input.value) {
      this.find("previous", true);
    }
  }

  close(): void {
    this.box.hidden = true;
    this.addon.clearDecorations();
    this.term.focus();
  }

  toggle(): void {
    if (this.box.hidden) {
      this.open();
    } else {
      this.close();
    }
  }

  /** "previous" goes up the scrollback (older output), "next" down. */
  private find(direction: "previous" | "next", incremental: boolean): void {
    const text = this.input.value;
    if (!text) {
      this.addon.clearDecorations();
      this.count.textContent = "";
      delete this.box.dataset.matches;
      return;
    }
    const options = { ...OPTIONS, incremental };
    if (direction === "previous") {
      this.addon.findPrevious(text, options);
    } else {
      this.addon.findNext(text, options);
    }
  }
}
