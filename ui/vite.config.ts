import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The control plane serves ui/dist at `/` and the desktop window loads the same files, so the
// API is always same-origin. In `npm run dev`, /v1 is proxied to a control plane on :7070.
const api = process.env.CORRAL_API ?? "http://127.0.0.1:7070";

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
    port: 5173,
    strictPort: true,
    proxy: {
      "/v1": { target: api, changeOrigin: true, ws: true },
    },
  },
});
