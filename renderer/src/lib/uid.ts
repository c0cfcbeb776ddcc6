// Unique ids for label/aria wiring within the page.
let n = 0;
export const uid = (prefix: string) => `${prefix}-${++n}`;
