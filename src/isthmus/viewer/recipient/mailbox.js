// A data channel's messages as a queue, listening from the moment the channel is created.
// It must listen before the channel opens: the sharing node sends the manifest as soon as
// its end is open, and the "open" and first "message" events can be dispatched while the
// page is still awaiting setRemoteDescription() (a busy page, a slow signalling thread).
// An event dispatched with no listener is gone for good, and the page then waited 30 s
// for a manifest that had already come.

/** next(ms) resolves to {data}, {closed: true}, {wake: true} or, after ms of silence, {timeout: true}. */
export class Mailbox {
  constructor(channel) {
    this.items = [];
    this.waiter = null;
    this.closed = false;
    channel.addEventListener("message", (event) => this.#push({ data: event.data }));
    channel.addEventListener("close", () => {
      this.closed = true;
      this.#push({ closed: true });
    });
  }

  #push(item) {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(item);
    } else this.items.push(item);
  }

  /** Make a waiting next() return (a verification finished). */
  wake() {
    this.#push({ wake: true });
  }

  next(ms) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve({ timeout: true });
      }, ms);
      this.waiter = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
    });
  }
}
