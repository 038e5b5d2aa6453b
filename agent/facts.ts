// Facts that several states need, read once per run (all packages with one dpkg-query, all units
// with one systemctl call). A module that changes what a fact describes forgets it.
export class Facts {
  #cache = new Map<string, Promise<unknown>>();

  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    let value = this.#cache.get(key) as Promise<T> | undefined;
    if (!value) {
      value = load();
      this.#cache.set(key, value);
      // A failed read is not cached: the next state may try again.
      value.catch(() => this.#cache.delete(key));
    }
    return value;
  }

  forget(key: string): void {
    this.#cache.delete(key);
  }

  #disposers: (() => Promise<void> | void)[] = [];

  /** Something a fact holds open for the run (a database connection), closed when the run ends. */
  onDispose(close: () => Promise<void> | void): void {
    this.#disposers.push(close);
  }

  async dispose(): Promise<void> {
    const closers = this.#disposers.reverse();
    this.#disposers = [];
    this.#cache.clear();
    for (const close of closers) await close();
  }
}
