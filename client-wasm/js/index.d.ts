import type { MqttClient } from "./switchboard_client.js";
export type { MqttClient };

export interface ConnectOptions {
  /** 4 (MQTT 3.1.1, default) or 5. */
  protocolVersion?: 3 | 4 | 5;
  /** Default: random `sb-` + 12 base-36 characters, unique per tab. */
  clientId?: string;
  clean?: boolean;
  /** Seconds; default 30. */
  keepalive?: number;
  username?: string;
  password?: string | Uint8Array;
  /**
   * "SCRAM-SHA-256" (needs `protocolVersion: 5`, `username` and `password`): MQTT 5 enhanced
   * authentication, so the password never crosses the network (it works on plain-http pages
   * too: the hashing is in the wasm), and the broker must prove it holds the user's verifier.
   * A fresh exchange runs on every reconnection. Default: `username`/`password` go in CONNECT.
   * A wrong password rejects with code "refused"; a broker that cannot prove itself too.
   */
  authMethod?: "SCRAM-SHA-256";
  will?: { topic: string; payload?: string | Uint8Array; qos?: 0 | 1 | 2; retain?: boolean };
  properties?: { sessionExpiryInterval?: number; receiveMaximum?: number; userProperties?: Record<string, string> };
  sessionExpiryInterval?: number;
  /** Milliseconds from opening the WebSocket to CONNACK; default 10000. */
  connectTimeout?: number;
  /** First back-off ceiling in ms (full jitter, doubling); default 500. */
  reconnectPeriod?: number;
  /** Largest back-off in ms; default 30000. */
  maxReconnectPeriod?: number;
  /** Uptime in ms after which the back-off resets; default 10000. */
  stablePeriod?: number;
  /** How long QoS 1/2 publications wait while offline, ms; default 5000. */
  offlineExpiry?: number;
  offlineQueueMax?: number;
  /** Largest packet accepted from the broker, bytes; default 1 MiB. */
  maxPacketSize?: number;
  /** "timeout" keeps the keep-alive timer on setTimeout instead of a Worker. */
  timer?: "worker" | "timeout";
}

/** Errors carry `code`: "refused" | "unreachable" | "dropped" | "expired" | "rejected" | "protocol" | "closed" | "invalid_options". */
export declare function connect(url: string | string[], options?: ConnectOptions): Promise<MqttClient>;
