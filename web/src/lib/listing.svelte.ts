// A list a page shows and reloads after each change it makes: its items (null while the
// first load runs) and the error of the last load.
export function listing<T>(load: () => Promise<T[]>) {
  const state = $state<{ items: T[] | null; error: unknown }>({ items: null, error: null });

  async function reload() {
    try {
      state.items = await load();
      state.error = null;
    } catch (error) {
      state.error = error;
    }
  }
  reload();

  return {
    get items() {
      return state.items;
    },
    get error() {
      return state.error;
    },
    reload,
  };
}
