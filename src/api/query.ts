// Docker's boolean query forms: 1, true, True.
export const truthy = (v: string | undefined): boolean => v === '1' || v === 'true' || v === 'True';
