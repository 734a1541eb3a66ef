"""The DynamoDB store's requests: its table (keys and indexes; created on request where missing, checked where
present) and the reads and writes of items by key and by Query."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from server.store.aws_store import AwsStore, error_code, new_client
from server.store.base import StoreError, StoreUnavailable
from server.store.dynamodb.items import TTL_ATTRIBUTE, epoch

log = logging.getLogger(__name__)

#: The deploy file that creates the table, named when the table is missing.
DEPLOY_FILE = "deploy/cloudformation.yaml"
#: (attribute, key type) of the table and of each index; every key attribute is a string.
TABLE_KEYS = (("pk", "HASH"), ("sk", "RANGE"))
INDEXES = {
    "by_task": (("task", "HASH"), ("sk", "RANGE")),
    "by_service": (("svc", "HASH"), ("task", "RANGE")),
    "running": (("run", "HASH"), ("sk", "RANGE")),
    "by_host": (("host", "HASH"), ("sk", "RANGE")),
}
#: What each index holds besides its keys. ``running`` (sparse: running containers only) carries the record, so
#: that service discovery reads every running container in a few paged Queries and no further read. ``by_host``
#: (sparse: the not-stopped containers of hosts, by ``server.liveness.host_key``) holds keys only: it names what a
#: host's full snapshot no longer lists.
PROJECTIONS = {"running": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["r", TTL_ATTRIBUTE]}}
#: DynamoDB's most keys per BatchGetItem, and rounds for the keys it leaves unprocessed under load.
BATCH_KEYS = 100
BATCH_ROUNDS = 5


class StoreMissing(StoreError, ValueError):
    """The table is missing or has other keys: the process stops at start with this message."""


class DynamoDBClient(AwsStore):
    """Requests to one DynamoDB table, made ready (found, or created with ``create``) before the first."""

    service = "dynamodb"
    title = "DynamoDB"
    table: str
    create: bool
    #: Whether the ``by_host`` index answered ACTIVE when the table was last described.
    _hosts_indexed = False

    def _new_client(self) -> Any:
        return new_client("dynamodb", self.region, self.endpoint_url, self.config)

    def _refused(self, operation: str, code: str, exc: ClientError) -> None:
        if code == "ConditionalCheckFailedException":
            raise exc  # a conditional write lost a race: its caller reads again
        if code == "ResourceNotFoundException":
            self._ready = False
            raise StoreUnavailable(self._missing()) from exc

    def _missing(self) -> str:
        return (
            f"DynamoDB table {self.table!r} does not exist: create it with {DEPLOY_FILE}"
            " (or add create=true to ECS_ID_MAPPER_STORE)"
        )

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                table = self.client.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise StoreUnavailable(f"DynamoDB describe_table failed: {exc}") from exc
                if not self.create:
                    raise StoreMissing(self._missing()) from None
                table = self._create_table()
            except BotoCoreError as exc:
                raise StoreUnavailable(f"DynamoDB describe_table failed: {exc}") from exc
            self._check_keys(table)
            self._hosts_indexed = active(table, "by_host")
            self._ready = True

    def _create_table(self) -> dict[str, Any]:
        log.info("creating DynamoDB table %s (on-demand)", self.table)
        names = {name for keys in (TABLE_KEYS, *INDEXES.values()) for name, _ in keys}
        create = dict(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in sorted(names)],
            KeySchema=_key_schema(TABLE_KEYS),
            GlobalSecondaryIndexes=[
                {
                    "IndexName": name,
                    "KeySchema": _key_schema(keys),
                    "Projection": PROJECTIONS.get(name, {"ProjectionType": "KEYS_ONLY"}),
                }
                for name, keys in INDEXES.items()
            ],
        )
        try:
            self.client.create_table(**create)
        except ClientError as exc:  # another process creating it at the same moment is fine: wait for it
            if error_code(exc) != "ResourceInUseException":
                raise StoreUnavailable(f"DynamoDB create_table failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"DynamoDB create_table failed: {exc}") from exc
        try:
            self.client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 2})
        except WaiterError as exc:
            raise StoreUnavailable(f"DynamoDB table {self.table!r} did not become active: {exc}") from exc
        self._call(
            "update_time_to_live",
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        return self._call("describe_table", TableName=self.table)["Table"]

    def _check_keys(self, table: dict[str, Any]) -> None:
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        found = {"table": _keys_of(table.get("KeySchema", []))}
        found.update({i["IndexName"]: _keys_of(i["KeySchema"]) for i in table.get("GlobalSecondaryIndexes", [])})
        wanted = {"table": TABLE_KEYS, **INDEXES}
        wrong = [name for name, keys in wanted.items() if found.get(name) != keys]
        wrong += [f"{n} type {types[n]}" for keys in wanted.values() for n, _ in keys if types.get(n, "S") != "S"]
        if wrong:
            raise StoreMissing(
                f"DynamoDB table {self.table!r} does not have the expected keys ({', '.join(wrong)}): "
                f"expected {_describe(wanted)}, as {DEPLOY_FILE} creates it"
            )

    def _ready_to_use(self) -> None:
        self._forked()
        self._ensure_table()

    # --- reads and writes ----------------------------------------------------------------------------------

    def _expires(self, moment: str) -> dict[str, dict[str, str]]:
        if not self.retention:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(epoch(moment) + int(self.retention))}}

    def _live(self, item: dict[str, Any]) -> bool:
        """Whether an item has not expired (TTL deletes it some time later, up to about two days)."""
        expires = item.get(TTL_ATTRIBUTE)
        return expires is None or not self.retention or float(expires["N"]) > self.clock()

    def _pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._call("query", TableName=self.table, **params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get_items(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items at ``keys`` that exist, read strongly consistent (BatchGetItem, 100 keys a request)."""
        chunks = [keys[i : i + BATCH_KEYS] for i in range(0, len(keys), BATCH_KEYS)]
        return [item for found in self.pool.map(self._get_chunk, chunks) for item in found]

    def _get_chunk(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(keys) == 1:
            item = self._call("get_item", TableName=self.table, Key=keys[0], ConsistentRead=True).get("Item")
            return [item] if item else []
        found: list[dict[str, Any]] = []
        request = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for round_ in range(BATCH_ROUNDS):
            answer = self._call("batch_get_item", RequestItems=request)
            found += answer.get("Responses", {}).get(self.table, [])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.05 * 2**round_)  # DynamoDB left keys over under load: back off before asking again
        raise StoreUnavailable(f"DynamoDB left keys unread after {BATCH_ROUNDS} rounds; try again")

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        """``requests`` (puts and deletes, at most 25) in one BatchWriteItem, those DynamoDB leaves unprocessed sent
        again a few times. Not on the store's pool: callers run inside its tasks."""
        pending = {self.table: requests}
        for round_ in range(BATCH_ROUNDS):
            if not pending.get(self.table):
                return
            pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
            if pending:
                time.sleep(0.05 * 2**round_)  # DynamoDB left writes over under load: back off first
        if pending.get(self.table):
            raise StoreUnavailable(f"DynamoDB left writes undone after {BATCH_ROUNDS} rounds")

    def _put(self, item: dict[str, Any], **condition: Any) -> bool:
        """One PutItem on a condition (``ConditionExpression`` and its values); False if the condition failed."""
        try:
            self._call("put_item", TableName=self.table, Item=item, **condition)
        except ClientError:  # only a refused condition comes through ``_call`` as is
            return False
        return True

    def _add_one(self, key: dict[str, Any], attribute: str) -> None:
        """One UpdateItem adding 1 to the number ``attribute`` of the item at ``key`` (made when absent)."""
        self._call(
            "update_item",
            TableName=self.table,
            Key=key,
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": attribute},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    def ping(self) -> None:
        self._ready_to_use()
        self._call("get_item", TableName=self.table, Key={"pk": {"S": "!ping"}, "sk": {"S": "!ping"}})


def active(table: dict[str, Any], index: str) -> bool:
    """Whether ``index`` answers queries: an index added to a table is backfilled first (``CREATING``)."""
    found = [i for i in table.get("GlobalSecondaryIndexes", []) if i["IndexName"] == index]
    return bool(found) and found[0].get("IndexStatus", "ACTIVE") == "ACTIVE"


def _key_schema(keys: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in keys]


def _keys_of(schema: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(((k["AttributeName"], k["KeyType"]) for k in schema), key=lambda k: k[1] != "HASH"))


def _describe(wanted: Mapping[str, tuple[tuple[str, str], ...]]) -> str:
    return "; ".join(f"{name}: {', '.join(f'{a} {k}' for a, k in keys)}" for name, keys in wanted.items())
