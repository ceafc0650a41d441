// Subscribes with the graphql-ws client (the most used GraphQL WebSocket client) and prints
// each delivered change as one JSON line; exits after COUNT changes.
// Usage: node subscribe.mjs <ws-url> <api-key> <customer-id> <count>
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, key, customer, count] = process.argv.slice(2);
const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${key}` } });
let seen = 0;
const timer = setTimeout(() => { console.error('timed out'); process.exit(3); }, 20000);
client.subscribe(
  { query: 'subscription($c: ID!) { consentChanges(customerId: $c) { cursor event { id subjectId } } }', variables: { c: customer } },
  {
    next: (msg) => {
      if (msg.errors) { console.log(JSON.stringify({ errors: msg.errors })); process.exit(2); }
      console.log(JSON.stringify(msg.data.consentChanges));
      if (++seen >= Number(count)) { clearTimeout(timer); client.dispose(); process.exit(0); }
    },
    error: (err) => { console.error('error', err); process.exit(1); },
    complete: () => {},
  },
);
console.error('subscribed');
