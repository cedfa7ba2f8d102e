// Pointer, wheel and touch gestures on the viewport, mapped to viewer actions:
//   mouse: left-drag = the chosen tool, right-drag = window/level, middle-drag = pan,
//          wheel = next/previous image, Ctrl/⌘+wheel (and trackpad pinch) = zoom;
//   touch: one finger = the chosen tool (W/L by default), a quick flick = next/previous image,
//          two fingers = pinch zoom and pan, double tap = fit.

const FLICK_MS = 280;
const FLICK_PX = 40;
const WHEEL_STEP = 60;
const SCROLL_DRAG_PX = 8;

/**
 * @param {HTMLElement} el the viewport element
 * @param {object} actions {tool(), step(n), windowBy(dx,dy), panBy(dx,dy), zoomBy(f,[x,y]),
 *   lengthStart(x,y), lengthMove(x,y), lengthEnd(), snapshot(), restore(s), fit()}
 */
export function attachGestures(el, actions) {
  const pointers = new Map();
  let gesture = null;
  let wheelRest = 0;
  let lastTap = 0;

  const local = (e) => {
    const r = el.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  el.addEventListener("contextmenu", (e) => e.preventDefault());

  el.addEventListener("pointerdown", (e) => {
    el.focus({ preventScroll: true });
    el.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, local(e));
    if (pointers.size === 2) {
      if (gesture?.kind === "tool" && gesture.snapshot) actions.restore(gesture.snapshot);
      gesture = { kind: "pinch", ...pinchState() };
      return;
    }
    if (pointers.size > 2) return;
    const button = e.pointerType === "mouse" ? e.button : 0;
    const kind = button === 2 ? "wl" : button === 1 ? "pan" : actions.tool();
    const [x, y] = local(e);
    gesture = {
      kind: "tool",
      tool: kind,
      x,
      y,
      startX: x,
      startY: y,
      t: e.timeStamp,
      touch: e.pointerType !== "mouse",
      snapshot: e.pointerType !== "mouse" ? actions.snapshot() : null,
      scrollRest: 0,
    };
    if (kind === "length") actions.lengthStart(x, y);
    e.preventDefault();
  });

  el.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId)) return;
    pointers.set(e.pointerId, local(e));
    if (!gesture) return;
    if (gesture.kind === "pinch") {
      if (pointers.size < 2) return;
      const now = pinchState();
      if (gesture.distance > 0) actions.zoomBy(now.distance / gesture.distance, now.center);
      actions.panBy(now.center[0] - gesture.center[0], now.center[1] - gesture.center[1]);
      Object.assign(gesture, now);
      return;
    }
    const [x, y] = local(e);
    const dx = x - gesture.x;
    const dy = y - gesture.y;
    gesture.x = x;
    gesture.y = y;
    switch (gesture.tool) {
      case "wl":
        actions.windowBy(dx, dy);
        break;
      case "pan":
        actions.panBy(dx, dy);
        break;
      case "zoom":
        actions.zoomBy(Math.exp(-dy / 150), [gesture.startX, gesture.startY]);
        break;
      case "length":
        actions.lengthMove(x, y);
        break;
      case "scroll": {
        gesture.scrollRest += dy;
        const n = Math.trunc(gesture.scrollRest / SCROLL_DRAG_PX);
        if (n) {
          gesture.scrollRest -= n * SCROLL_DRAG_PX;
          actions.step(n);
        }
        break;
      }
      default:
        break;
    }
  });

  const end = (e) => {
    if (!pointers.has(e.pointerId)) return;
    pointers.delete(e.pointerId);
    if (!gesture) return;
    if (gesture.kind === "pinch") {
      if (pointers.size === 0) gesture = null;
      return;
    }
    if (gesture.tool === "length") actions.lengthEnd();
    if (gesture.touch && e.type === "pointerup") flickOrTap(e);
    gesture = null;
  };
  el.addEventListener("pointerup", end);
  el.addEventListener("pointercancel", end);

  /** A short fast one-finger swipe steps one image; a quick second tap fits the image. */
  function flickOrTap(e) {
    const [x, y] = local(e);
    const dx = x - gesture.startX;
    const dy = y - gesture.startY;
    const quick = e.timeStamp - gesture.t < FLICK_MS;
    const far = Math.max(Math.abs(dx), Math.abs(dy));
    if (quick && far >= FLICK_PX && gesture.tool !== "length" && gesture.tool !== "scroll") {
      if (gesture.snapshot) actions.restore(gesture.snapshot);
      const along = Math.abs(dx) > Math.abs(dy) ? dx : dy;
      actions.step(along < 0 ? 1 : -1);
    } else if (quick && far < 10) {
      if (e.timeStamp - lastTap < 350) {
        actions.fit();
        lastTap = 0;
      } else lastTap = e.timeStamp;
    }
  }

  function pinchState() {
    const [a, b] = [...pointers.values()];
    return { distance: Math.hypot(b[0] - a[0], b[1] - a[1]), center: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
  }

  el.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const delta = e.deltaMode === 1 ? e.deltaY * 20 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
      if (e.ctrlKey || e.metaKey) {
        actions.zoomBy(Math.exp(-delta / 300), local(e));
        return;
      }
      wheelRest += delta;
      if (Math.abs(wheelRest) < WHEEL_STEP && Math.abs(delta) < WHEEL_STEP) {
        return;
      }
      const n = Math.sign(wheelRest) * Math.max(1, Math.floor(Math.abs(wheelRest) / 100));
      wheelRest = 0;
      actions.step(n);
    },
    { passive: false },
  );
}
