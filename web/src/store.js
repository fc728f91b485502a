// A tiny global store: one object, shallow updates, subscribers re-render.
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set();
let state = {
  user: null,
  needAuth: false,
  toasts: [],
  uploads: [],
};

export const store = {
  get: () => state,
  set(patch) {
    state = { ...state, ...patch };
    listeners.forEach((l) => l(state));
  },
  subscribe(l) {
    listeners.add(l);
    return () => listeners.delete(l);
  },
};

export function useStore() {
  const [s, set] = useState(state);
  useEffect(() => store.subscribe(set), []);
  return s;
}

let toastId = 0;
/** Shows a message for a while; `action` is an optional {label, run} button (Undo). */
export function toast(text, action, ms = 6000) {
  const id = ++toastId;
  store.set({ toasts: [...state.toasts, { id, text, action }] });
  setTimeout(() => dismiss(id), ms);
  return id;
}
export function dismiss(id) {
  store.set({ toasts: state.toasts.filter((t) => t.id !== id) });
}
export const toastError = (e) => toast(e && e.message ? e.message : String(e), null, 9000);
