// Publishes to halley's RESP listener with a Node Redis client, as a backend would,
// and prints each reply on a line: PING's, the first publish's seq, then the last
// seq of 100 pipelined publishes. tests/resp.rs runs it and checks the WebSocket
// subscriber got every message.
//   node publish.mjs node-redis|ioredis HOST PORT CHANNEL PASSWORD|- 2|3
// Exit 1 with the client's error on stderr (a wrong password, say).
import { createClient } from 'redis';
import Redis from 'ioredis';

const [lib, host, port, channel, passwordArg, resp] = process.argv.slice(2);
const password = passwordArg === '-' ? undefined : passwordArg;
const timer = setTimeout(() => fail(new Error('timed out after 20 s')), 20_000);

function fail(err) {
  console.error(`error: ${err.message}`);
  process.exit(1);
}

async function nodeRedis() {
  const client = createClient({
    socket: { host, port: Number(port), connectTimeout: 10_000, reconnectStrategy: false },
    password,
    name: 'node-redis-test',
    RESP: Number(resp),
  });
  client.on('error', fail);
  await client.connect();
  console.log(await client.ping());
  console.log(await client.publish(channel, 'one'));
  // Commands issued in one tick go out in one write: node-redis's pipelining.
  const seqs = await Promise.all(
    Array.from({ length: 100 }, (_, i) => client.publish(channel, String(i + 2))),
  );
  console.log(seqs[seqs.length - 1]);
  await client.quit();
}

async function ioredis() {
  const client = new Redis({
    host,
    port: Number(port),
    password,
    connectionName: 'ioredis-test',
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on('error', () => {}); // the rejected promise below reports it
  await client.connect();
  console.log(await client.ping());
  console.log(await client.publish(channel, 'one'));
  const pipeline = client.pipeline();
  for (let i = 0; i < 100; i++) pipeline.publish(channel, String(i + 2));
  const replies = await pipeline.exec();
  for (const [err] of replies) if (err) throw err;
  console.log(replies[replies.length - 1][1]);
  await client.quit();
}

(lib === 'ioredis' ? ioredis() : nodeRedis()).then(() => clearTimeout(timer), fail);
