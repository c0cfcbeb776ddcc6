// Svelte compiler options for vite-plugin-svelte (defaults: runes mode is inferred per component).
export default {};
