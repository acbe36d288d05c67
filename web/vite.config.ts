import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// `npm run dev` serves the app with hot reload and forwards the API to a running service
// (deploy/scripts/run.sh: https://127.0.0.1:8443, its development certificate).
export default defineConfig({
  plugins: [svelte()],
  build: {
    target: 'es2022',
    // Inlined assets would be data: URLs in <style>/<script>; the CSP allows files only.
    assetsInlineLimit: 0,
    sourcemap: false,
    // three.js (the 3D viewer) is one lazy chunk of ~550 kB, loaded only with a profile.
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      '/api': { target: process.env.MYSCANNER_API ?? 'https://127.0.0.1:8443', secure: false, ws: true },
    },
  },
});
