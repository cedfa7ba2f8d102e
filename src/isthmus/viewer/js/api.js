// The viewer's only way to the server: DICOMweb (PS3.18) QIDO-RS, WADO-RS and STOW-RS
// under the service root, with the Bearer token when the server asks for one.

import { askToken, getToken } from "./auth.js";
import { MultipartParser, mediaTypeParams, multipartBody, parseMultipart } from "./multipart.js";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const OCTET_FRAMES = 'multipart/related; type="application/octet-stream"';
const RAW_FRAMES = `${OCTET_FRAMES}; transfer-syntax=1.2.840.10008.1.2.1`;
// Uncompressed, or baseline JPEG when stored so (the browser decodes it, colour converted).
const AUTO_FRAMES = `${RAW_FRAMES}, multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50`;

export class DicomWeb {
  /** @param {string} root the service root, e.g. "/dicom-web" */
  constructor(root) {
    this.root = root.replace(/\/$/, "");
  }

  url(path, params) {
    const query = params ? `?${params}` : "";
    return path.startsWith("http") ? path + query : `${this.root}${path}${query}`;
  }

  /** fetch() with the token; a 401 asks for a token and tries once more with it. */
  async request(path, { params, accept, method = "GET", body, headers = {}, signal } = {}) {
    for (let attempt = 0; ; attempt++) {
      const all = { ...headers };
      if (accept) all.Accept = accept;
      const token = getToken();
      if (token) all.Authorization = `Bearer ${token}`;
      const response = await fetch(this.url(path, params), { method, body, headers: all, signal });
      if (response.status === 401 && attempt < 3) {
        const message = await errorText(response);
        const entered = await askToken(
          token ? `The token was refused (${message}). Enter another.` : "This server needs an API token.",
        );
        if (entered) continue;
      }
      if (!response.ok) throw new ApiError(response.status, await errorText(response));
      return response;
    }
  }

  /** A QIDO-RS search as DICOM JSON (204 No Content is an empty list); `truncated` per the Warning header. */
  async search(path, params, signal) {
    const response = await this.request(path, { params, accept: "application/dicom+json", signal });
    const results = response.status === 204 ? [] : await response.json();
    return { results, warning: response.headers.get("Warning") || "" };
  }

  searchStudies(params, signal) {
    return this.search("/studies", params, signal);
  }

  /** UPS-RS Search for Workitems (PS3.18 11.9): the worklist. */
  searchWorkitems(params, signal) {
    return this.search("/workitems", params, signal);
  }

  async seriesOf(study, signal) {
    const params = new URLSearchParams();
    for (const f of ["SeriesDescription", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"])
      params.append("includefield", f);
    return (await this.search(`/studies/${study}/series`, params, signal)).results;
  }

  /** WADO-RS metadata (PS3.18 10.4.1.1.2), of a study or one series. */
  async metadata(study, series, signal) {
    const path = series ? `/studies/${study}/series/${series}/metadata` : `/studies/${study}/metadata`;
    const response = await this.request(path, { accept: "application/dicom+json", signal });
    return response.status === 204 ? [] : response.json();
  }

  /**
   * Frames of an instance (PS3.18 10.4.1.1.5): uncompressed little endian bytes per frame
   * (`raw`), or also baseline JPEG frames when stored as such (`auto`).
   * Returns [{type, transferSyntax, bytes}] in the order asked.
   */
  async frames(study, series, sop, frameNumbers, { raw = false, signal } = {}) {
    const response = await this.request(
      `/studies/${study}/series/${series}/instances/${sop}/frames/${frameNumbers.join(",")}`,
      { accept: raw ? RAW_FRAMES : AUTO_FRAMES, signal },
    );
    const type = response.headers.get("Content-Type") || "";
    const bytes = new Uint8Array(await response.arrayBuffer());
    const describe = (contentType, body) => {
      const params = mediaTypeParams(contentType);
      return { type: params[""], transferSyntax: params["transfer-syntax"] || "", bytes: body };
    };
    if (!type.toLowerCase().startsWith("multipart/")) return [describe(type, bytes)];
    const fallback = mediaTypeParams(type).type || "application/octet-stream";
    return parseMultipart(bytes, type).map((p) => describe(p.headers["content-type"] || fallback, p.body));
  }

  /** A rendered frame (PS3.18 10.4.1.1.3), optionally with a window "center,width,function". */
  async rendered(study, series, sop, frame, { window, signal } = {}) {
    const params = new URLSearchParams();
    if (window) params.set("window", window);
    const response = await this.request(
      `/studies/${study}/series/${series}/instances/${sop}/frames/${frame}/rendered`,
      { params, accept: "image/png, image/jpeg;q=0.9", signal },
    );
    return response.blob();
  }

  /** A series thumbnail (PS3.18 10.4.1.1.5) as a Blob. */
  async thumbnail(study, series, size, signal) {
    const params = new URLSearchParams({ viewport: `${size},${size}` });
    const response = await this.request(`/studies/${study}/series/${series}/thumbnail`, {
      params,
      accept: "image/jpeg, image/png;q=0.9",
      signal,
    });
    return response.blob();
  }

  /** Bulk data by a BulkDataURI from metadata (relative to the service root, or absolute). */
  async bulkdata(uri, signal) {
    const path = /^https?:/.test(uri) ? uri : uri.startsWith(`${this.root}/`) ? uri.slice(this.root.length) : uri;
    const response = await this.request(path, { accept: `${OCTET_FRAMES}, application/octet-stream;q=0.5`, signal });
    const type = response.headers.get("Content-Type") || "";
    const bytes = new Uint8Array(await response.arrayBuffer());
    return type.toLowerCase().startsWith("multipart/")
      ? (parseMultipart(bytes, type)[0]?.body ?? new Uint8Array(0))
      : bytes;
  }

  /**
   * Retrieve a study's instances as stored (PS3.18 10.4.1.1.1, transfer-syntax=*), calling
   * onInstance(bytes) for each Part 10 file as soon as it has arrived (the body is streamed).
   */
  async retrieveStudy(study, onInstance, signal) {
    const response = await this.request(`/studies/${study}`, {
      accept: 'multipart/related; type="application/dicom"; transfer-syntax=*',
      signal,
    });
    const parser = new MultipartParser(mediaTypeParams(response.headers.get("Content-Type")).boundary);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const part of parser.push(value)) await onInstance(part.body);
    }
    parser.end();
  }

  /**
   * STOW-RS (PS3.18 10.5): store Part 10 files in one request. onProgress(sentBytes, totalBytes).
   * Resolves to {status, body} — the response's DICOM JSON with Referenced/Failed SOP Sequences.
   */
  stow(files, onProgress) {
    const { chunks, contentType } = multipartBody(
      files.map((bytes) => ({ body: bytes })),
      "application/dicom",
    );
    const blob = new Blob(chunks, { type: contentType });
    const send = (token) =>
      new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", this.url("/studies"));
        xhr.setRequestHeader("Content-Type", contentType);
        xhr.setRequestHeader("Accept", "application/dicom+json");
        if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
        xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.total || blob.size);
        xhr.onerror = () => reject(new ApiError(0, "network error while uploading"));
        xhr.onload = () => {
          let body = null;
          try {
            body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
          } catch {
            body = null;
          }
          resolve({ status: xhr.status, body, text: xhr.responseText });
        };
        xhr.send(blob);
      });
    return (async () => {
      for (let attempt = 0; ; attempt++) {
        const result = await send(getToken());
        if (result.status === 401 && attempt < 3) {
          if (await askToken("Uploading needs an API token with write permission.")) continue;
        }
        return result;
      }
    })();
  }
}

/** A short readable reason from an error response (JSON {"message"|"error"|"detail"} or text). */
async function errorText(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    /* body unreadable */
  }
  try {
    const json = JSON.parse(text);
    const message = json.message || json.error || json.detail;
    if (message) return String(message);
  } catch {
    /* not JSON */
  }
  return (text && text.length < 300 ? text : response.statusText) || `HTTP ${response.status}`;
}
