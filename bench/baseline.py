#!/usr/bin/python3
"""Baseline consumer written the way the original Python project did it.

kafka-python KafkaConsumer + psycopg2: for each message, json.loads, one INSERT per row (the
ticket, each of its seats, its payment transaction), one commit: the same rows our consumer
writes, the original's way.
Run with the system Python (/usr/bin/python3) after bench/ensure_python.sh.

The PostgreSQL URI comes from the environment (POSTGRES_URI), never from the command line.
Prints one JSON line on stdout: {"messages": N, "seconds": S, "ticketsPerSecond": R}, where the
time runs from the first message received to the last commit.
"""
import argparse
import json
import os
import sys
import time
import uuid

from kafka import KafkaConsumer
import psycopg2

INSERT = """INSERT INTO "{table}" (ticket_id, theater, movie, name, email, phone_number,
    seats, showtime, price_amount, price_currency, purchased_at, kafka_topic, kafka_partition,
    kafka_offset, published_at)
  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0))"""
# the seats table is keyed by show: PostgreSQL computes the show id as lib/model/columns.ts
# showIdSql does (MD5 of theater, movie and the showtime's instant in microseconds)
INSERT_SEAT = """INSERT INTO "{table}_seats" (show_id, seat, ticket_id)
  SELECT md5(CASE WHEN strpos(t || m, chr(31)) > 0 THEN octet_length(t)::text || chr(31) ELSE ''
      END || t || chr(31) || m || chr(31) || (extract(epoch FROM s) * 1000000)::bigint::text)::uuid,
    %s, %s
  FROM (SELECT %s::text AS t, %s::text AS m, %s::timestamptz AS s) AS show"""
INSERT_TRANSACTION = """INSERT INTO "{table}_transactions"
  (ticket_id, amount, currency, created_at, transaction_id) VALUES (%s, %s, %s, %s, %s)"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True, help="host:port of the Kafka listener")
    p.add_argument("--security-protocol", default="SSL", choices=["SSL", "PLAINTEXT"])
    p.add_argument("--cert-path", required=True, help="folder with ca.pem, service.cert, service.key")
    p.add_argument("--topic", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--group-id", required=True)
    p.add_argument("--num", type=int, required=True, help="stop after this many messages")
    p.add_argument("--idle-timeout", type=float, default=10, help="stop after S s without messages")
    return p.parse_args()


def kafka_consumer(args):
    cert = lambda name: os.path.join(args.cert_path, name)  # noqa: E731
    ssl = {}
    if args.security_protocol == "SSL":
        ssl = dict(ssl_cafile=cert("ca.pem"), ssl_certfile=cert("service.cert"),
                   ssl_keyfile=cert("service.key"), ssl_check_hostname=False)
    return KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        security_protocol=args.security_protocol,
        group_id=args.group_id,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(args.idle_timeout * 1000),
        **ssl,
    )


def main():
    args = parse_args()
    db = psycopg2.connect(os.environ["POSTGRES_URI"],
                          sslrootcert=os.path.join(args.cert_path, "ca.pem"))
    cursor = db.cursor()
    insert = INSERT.format(table=args.table)
    insert_seat = INSERT_SEAT.format(table=args.table)
    insert_transaction = INSERT_TRANSACTION.format(table=args.table)
    consumer = kafka_consumer(args)
    count = 0
    first = last = None
    for message in consumer:
        if first is None:
            first = time.monotonic()
        t = json.loads(message.value)
        cursor.execute(insert, (
            t["ticket_id"], t["theater"], t["movie"], t["name"], t["email"], t["phone_number"],
            ",".join(t["seats"]), t["showtime"], t["price"]["amount"], t["price"]["currency"],
            t["purchased_at"], message.topic, message.partition, message.offset, message.timestamp,
        ))
        for seat in t["seats"]:
            cursor.execute(insert_seat, (seat, t["ticket_id"], t["theater"], t["movie"],
                                         t["showtime"]))
        cursor.execute(insert_transaction, (t["ticket_id"], t["price"]["amount"],
                                            t["price"]["currency"], t["purchased_at"],
                                            str(uuid.uuid4())))
        db.commit()
        last = time.monotonic()
        count += 1
        if count >= args.num:
            break
    consumer.close()
    db.close()
    seconds = (last - first) if first is not None else 0.0
    rate = count / seconds if seconds > 0 else 0.0
    print(json.dumps({"messages": count, "seconds": seconds, "ticketsPerSecond": rate}))
    return 0 if count >= args.num else 1


if __name__ == "__main__":
    sys.exit(main())
