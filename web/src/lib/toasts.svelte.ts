// Short messages about actions that finished in the background (saved, copied, exported).
export interface Toast {
  id: number;
  text: string;
  kind: 'ok' | 'error';
}

let next = 0;

class Toasts {
  items = $state<Toast[]>([]);

  show(text: string, kind: Toast['kind'] = 'ok') {
    const id = ++next;
    this.items.push({ id, text, kind });
    setTimeout(() => this.dismiss(id), kind === 'error' ? 8000 : 4000);
  }

  dismiss(id: number) {
    this.items = this.items.filter((t) => t.id !== id);
  }
}

export const toasts = new Toasts();
