// Switchboard service worker: serves the app shell when the network is away.
//
// The page registers it as `sw.js?v=<build hash>` (the content hash trunk puts in the app's
// script name), so every build installs a new worker with its own cache and the old caches are
// deleted on activation. Page loads are network-first (a new build, or `trunk serve` in
// development, is always picked up when the server answers); the hashed assets never change
// under a name, so they are served from the cache. Nothing else is touched: the MQTT WebSocket
// (`/mqtt`) is not a fetch, the embeddable widget (`/embed*`, `/widget/`) is left alone, and
// other requests go straight to the network.
const VERSION = new URL(self.location).searchParams.get("v");
const CACHE = VERSION ? `switchboard-${VERSION}` : null;
const SHELL = "./";
const STATIC = ["manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"];

self.addEventListener("install", (event) => {
  if (!CACHE) return;
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const page = await fetch(SHELL, { cache: "no-store" });
    const html = await page.clone().text();
    const assets = new Set(STATIC);
    for (const m of html.matchAll(/["']([^"'\s]+\.(?:js|wasm|css))["']/g)) {
      const url = new URL(m[1], self.registration.scope);
      if (url.origin === self.location.origin) assets.add(url.href);
    }
    await cache.put(SHELL, page);
    await cache.addAll([...assets]);
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith("switchboard-") && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (!CACHE || req.method !== "GET" || url.origin !== self.location.origin || url.pathname === "/mqtt") return;
  // The embeddable widget (its iframe page and files) is not part of the app shell.
  if (url.pathname.startsWith("/embed") || url.pathname.startsWith("/widget/")) return;
  if (req.mode === "navigate") {
    event.respondWith(
      fetch(req).catch(async () => (await caches.match(SHELL, { cacheName: CACHE })) || Response.error()),
    );
    return;
  }
  event.respondWith((async () => (await caches.match(req, { cacheName: CACHE })) || fetch(req))());
});
