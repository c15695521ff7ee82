// Files to and from the shell: the upload button, dropping files on the page, the
// progress line, and saving what `webterm-download FILE` offers. Uploads are `PUT
// {files}/{name}` and downloads `GET {files}/download/{id}`, where {files} is
// `/terminals/NAME/files` on the page's own webserver, which relays it to the terminal
// server (in both address modes: the browser never dials a terminal's port for files),
// each with a fresh token in `Authorization: Bearer` (a token is
// short-lived: it is asked for just before, as a reconnect would). Every transfer is
// kept in `transfers` (window.webterm.transfers) for tests and the console.

export interface Credentials {
  readonly terminal: string; // the terminal's name
  readonly token: string;
}

export interface Transfer {
  readonly kind: "upload" | "download";
  readonly name: string; // as the user named it (upload) or the shell offered it
  state: "running" | "done" | "failed";
  loaded: number;
  total: number;
  stored: string | null; // the name the file got in the shell's directory
  error: string | null;
}

export interface FilesHost {
  /** A fresh token for the terminal this page shows, or why there is none. */
  credentials(): Promise<Credentials | string>;
}

const HIDE_AFTER_MS = 8_000; // the transfer line goes after this long without news

/** The files endpoint of terminal `name`, on the page's own webserver. */
export function filesUrl(name: string): string {
  return `/terminals/${encodeURIComponent(name)}/files`;
}

/** A name safe to save a download as: no path, no control characters, not hidden. */
export function safeName(name: string): string {
  // eslint-disable-next-line no-control-regex
  const cleaned = name.replace(/[\u0000-\u001f\u007f/\\]/g, "_").replace(/^[.\s]+/, "");
  return cleaned.slice(0, 200) || "download";
}

function humanSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement;

export class Files {
  readonly transfers: Transfer[] = [];
  private queue: Promise<void> = Promise.resolve();
  private hideTimer: number | undefined;

  constructor(private readonly host: FilesHost) {}

  /** The upload button, its file input, and drag-and-drop anywhere on the page. */
  wire(): void {
    const input = $("upload-input") as HTMLInputElement;
    $("upload-button").addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      if (input.files && input.files.length > 0) {
        this.upload(Array.from(input.files));
      }
      input.value = ""; // the same file again is a new choice
    });
    const drop = $("drop");
    const carriesFiles = (event: DragEvent): boolean => event.dataTransfer?.types.includes("Files") ?? false;
    document.addEventListener("dragover", (event) => {
      if (carriesFiles(event)) {
        event.preventDefault();
        event.dataTransfer!.dropEffect = "copy";
        drop.hidden = false;
      }
    });
    document.addEventListener("dragleave", (event) => {
      if (event.relatedTarget === null) {
        drop.hidden = true; // left the window
      }
    });
    document.addEventListener("drop", (event) => {
      drop.hidden = true;
      if (carriesFiles(event)) {
        event.preventDefault();
        this.upload(Array.from(event.dataTransfer!.files));
      }
    });
  }

  /** Upload `files` one after another into the shell's current directory. */
  upload(files: readonly File[]): void {
    for (const file of files) {
      const transfer: Transfer = {
        kind: "upload", name: file.name, state: "running", loaded: 0, total: file.size, stored: null, error: null,
      }; // prettier-ignore
      this.transfers.push(transfer);
      this.queue = this.queue.then(() => this.send(file, transfer));
    }
    this.show();
  }

  private async send(file: File, transfer: Transfer): Promise<void> {
    const credentials = await this.host.credentials();
    if (typeof credentials === "string") {
      this.fail(transfer, credentials);
      return;
    }
    await new Promise<void>((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", `${filesUrl(credentials.terminal)}/${encodeURIComponent(file.name)}`);
      xhr.setRequestHeader("Authorization", `Bearer ${credentials.token}`);
      xhr.upload.onprogress = (event) => {
        transfer.loaded = event.loaded;
        this.show();
      };
      xhr.onload = () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(xhr.responseText) as Record<string, unknown>;
        } catch {
          // a proxy's error page
        }
        if (xhr.status === 201 && typeof body.name === "string") {
          transfer.state = "done";
          transfer.loaded = transfer.total;
          transfer.stored = body.name;
          this.show();
        } else {
          this.fail(transfer, typeof body.error === "string" ? body.error : `HTTP ${xhr.status}`);
        }
        resolve();
      };
      xhr.onerror = () => {
        this.fail(transfer, "the connection broke");
        resolve();
      };
      xhr.send(file);
    });
  }

  /** Save the file the shell offered (`webterm-download`): fetch it, then hand it to the
   * browser's downloads. */
  async download(id: string, name: string, size: number): Promise<void> {
    const transfer: Transfer = {
      kind: "download", name: safeName(name), state: "running", loaded: 0, total: size, stored: null, error: null,
    }; // prettier-ignore
    this.transfers.push(transfer);
    this.show();
    const credentials = await this.host.credentials();
    if (typeof credentials === "string") {
      this.fail(transfer, credentials);
      return;
    }
    try {
      const response = await fetch(`${filesUrl(credentials.terminal)}/download/${encodeURIComponent(id)}`, {
        headers: { Authorization: `Bearer ${credentials.token}` },
        cache: "no-store",
      });
      if (!response.ok) {
        const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
        this.fail(transfer, typeof body.error === "string" ? body.error : `HTTP ${response.status}`);
        return;
      }
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = transfer.name;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      transfer.state = "done";
      transfer.loaded = blob.size;
      transfer.stored = transfer.name;
      this.show();
    } catch {
      this.fail(transfer, "the connection broke");
    }
  }

  private fail(transfer: Transfer, error: string): void {
    transfer.state = "failed";
    transfer.error = error;
    this.show();
  }

  /** The transfer line in the bar: the latest transfer's progress or outcome. */
  private show(): void {
    const transfer = this.transfers.find((t) => t.state === "running") ?? this.transfers[this.transfers.length - 1];
    if (transfer === undefined) {
      return;
    }
    const line = $("transfer");
    const progress = $("transfer-progress") as HTMLProgressElement;
    const verb = transfer.kind === "upload" ? "uploading" : "downloading";
    let text: string;
    if (transfer.state === "running") {
      const percent = transfer.total > 0 ? Math.floor((100 * transfer.loaded) / transfer.total) : 0;
      text = `${verb} ${transfer.name}: ${percent}% of ${humanSize(transfer.total)}`;
    } else if (transfer.state === "done") {
      const renamed = transfer.stored !== null && transfer.stored !== transfer.name ? ` as ${transfer.stored}` : "";
      text = transfer.kind === "upload" ? `uploaded ${transfer.name}${renamed}` : `downloaded ${transfer.name}`;
    } else {
      text = `${transfer.kind} of ${transfer.name} failed: ${transfer.error ?? "?"}`;
    }
    progress.max = Math.max(transfer.total, 1);
    progress.value = transfer.state === "done" ? progress.max : transfer.loaded;
    progress.hidden = transfer.state !== "running";
    $("transfer-text").textContent = text;
    line.dataset.state = transfer.state;
    line.hidden = false;
    window.clearTimeout(this.hideTimer);
    if (transfer.state !== "running") {
      this.hideTimer = window.setTimeout(() => {
        line.hidden = true;
      }, HIDE_AFTER_MS);
    }
  }
}
