// What the stand-ins saw: every request and every check name.
export const recorded = { requests: [], checks: [] };
