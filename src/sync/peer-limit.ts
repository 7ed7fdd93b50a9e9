// A terminal went past a bound the server sets on what a peer may send (a list
// longer than it announced or than the daemon accepts, paging that does not
// advance, a window overrun). Thrown by a driver or the engine; the engine
// records it (PEER_LIMIT_EXCEEDED, with `figures`), logs it and ends that
// session only. `figures` hold counts and names, never personal data.
export class PeerLimitError extends Error {
  constructor(
    /** which bound: 'window', 'list-total', 'list-page', 'list-order', ... */
    readonly limit: string,
    readonly figures: Record<string, number | string>,
    message: string,
  ) {
    super(message);
    this.name = 'PeerLimitError';
  }
}

/** Users a terminal may list by default (--max-terminal-users); also bounded by the capacity it announced. */
export const DEFAULT_MAX_TERMINAL_USERS = 2_000_000;

/** Facts per second a terminal may deliver before its acknowledgements wait (--terminal-event-rate). */
export const DEFAULT_EVENT_RATE = 2000;

/** The SUBSCRIBE_LOG window asked of terminals and enforced on them (PROTOCOL.md allows 1..4096). */
export const DEFAULT_WINDOW = 1000;
