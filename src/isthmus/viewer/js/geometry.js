// Where the image sits in the viewport: zoom, pan, quarter-turn rotation and flips as a 2-D
// affine transform (the same [a, b, c, d, e, f] as CanvasRenderingContext2D.setTransform).

/** A fresh view: fitted, centred, unrotated. */
export function initialView() {
  return { zoom: 1, fitted: true, panX: 0, panY: 0, rotation: 0, flipH: false, flipV: false };
}

/** The image's displayed width and height in image pixels, after pixel aspect ratio. */
function shape(image) {
  return { w: image.columns, h: image.rows * (image.aspect ?? 1) };
}

/** Zoom that fits the whole image inside the viewport, given the rotation. */
export function fitZoom(image, viewport, rotation = 0) {
  const { w, h } = shape(image);
  const [iw, ih] = rotation % 2 ? [h, w] : [w, h];
  if (!iw || !ih || !viewport.width || !viewport.height) return 1;
  return Math.min(viewport.width / iw, viewport.height / ih);
}

/** The image→viewport transform for a view. */
export function transform(view, image, viewport) {
  const aspect = image.aspect ?? 1;
  // Flip, then scale for aspect, rotate, zoom; about the image centre; then to viewport centre + pan.
  const fx = view.flipH ? -1 : 1;
  const fy = view.flipV ? -1 : 1;
  const angle = ((view.rotation % 4) * Math.PI) / 2;
  const cos = Math.round(Math.cos(angle));
  const sin = Math.round(Math.sin(angle));
  const z = view.zoom;
  const a = z * cos * fx;
  const b = z * sin * fx;
  const c = -z * sin * fy * aspect;
  const d = z * cos * fy * aspect;
  const cx = image.columns / 2;
  const cy = image.rows / 2;
  const e = viewport.width / 2 + view.panX - (a * cx + c * cy);
  const f = viewport.height / 2 + view.panY - (b * cx + d * cy);
  return [a, b, c, d, e, f];
}

/** Apply a transform to a point. */
export function apply(m, x, y) {
  return [m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]];
}

/** Inverse of a transform (viewport → image coordinates). */
export function invert(m) {
  const det = m[0] * m[3] - m[1] * m[2];
  return [
    m[3] / det,
    -m[1] / det,
    -m[2] / det,
    m[0] / det,
    (m[2] * m[5] - m[3] * m[4]) / det,
    (m[1] * m[4] - m[0] * m[5]) / det,
  ];
}

/** Zoom by a factor about a viewport point, keeping that point fixed on screen. */
export function zoomAbout(view, factor, point, viewport) {
  const zoom = Math.min(50, Math.max(0.05, view.zoom * factor));
  const k = zoom / view.zoom;
  const ox = point[0] - viewport.width / 2 - view.panX;
  const oy = point[1] - viewport.height / 2 - view.panY;
  return { ...view, zoom, fitted: false, panX: view.panX - ox * (k - 1), panY: view.panY - oy * (k - 1) };
}

/**
 * Distance between two image points in millimetres (PS3.3 10.7.1.3: Pixel Spacing is
 * row spacing, then column spacing), or in pixels when spacing is unknown.
 */
export function distance(p, q, spacing) {
  const dx = q[0] - p[0];
  const dy = q[1] - p[1];
  if (!spacing) return { value: Math.hypot(dx, dy), unit: "px" };
  const [rowSpacing, columnSpacing] = spacing;
  return { value: Math.hypot(dx * columnSpacing, dy * rowSpacing), unit: "mm" };
}
