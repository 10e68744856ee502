import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The control plane serves ui/dist at `/` and the desktop window loads the same files, so the
// API is always same-origin. In `npm run dev`, /v1 is proxied to a control plane on :7070.
const api = process.env.CORRAL_API ?? "http://127.0.0.1:7070";
const port = 5173;
// The API lets the session cookie act only for its own origin; in dev the UI's pages come from
// this server, so requests they make are passed on as coming from the API's origin. Pages of any
// other origin keep theirs and are refused as they would be.
const devOrigins = [`http://localhost:${port}`, `http://127.0.0.1:${port}`];
const apiOrigin = new URL(api).origin;
const asApiOrigin = (req: { getHeader(name: string): unknown; setHeader(name: string, value: string): unknown }) => {
  if (devOrigins.includes(String(req.getHeader("origin")))) req.setHeader("origin", apiOrigin);
};

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The graph tab's chunk carries the elkjs layout engine (~1.6 MB); it loads only on that tab.
    chunkSizeWarningLimit: 2000,
  },
  server: {
    port,
    strictPort: true,
    proxy: {
      "/v1": {
        target: api,
        changeOrigin: true,
        ws: true,
        configure: (proxy) => {
          proxy.on("proxyReq", asApiOrigin);
          proxy.on("proxyReqWs", asApiOrigin);
        },
      },
    },
  },
});
