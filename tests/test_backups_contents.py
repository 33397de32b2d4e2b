"""The dump readers that prove what a backup holds: tables and rows, read while the dump streams,
whatever the chunk boundaries (pure: no server needed)."""

import pytest

from deploy_ops.databases.contents import MySQLDumpReader, PostgresDumpReader, differences, missing_from

POSTGRES_DUMP = b"""--
-- PostgreSQL database dump
--
SET statement_timeout = 0;
CREATE TABLE public.items (
    id integer NOT NULL,
    name text
);
CREATE UNLOGGED TABLE "Odd Schema"."a ""quoted"" (name)" (
    i integer
);
CREATE TABLE public.empty (
    i integer
);
CREATE TABLE public.never_copied (i integer);
COPY public.items (id, name) FROM stdin;
1\tone
2\tends with a backslash and a dot \\\\.
3\t\\\\.
4\t\\N
\\.
COPY "Odd Schema"."a ""quoted"" (name)" (i) FROM stdin;
7
\\.
COPY public.empty (i) FROM stdin;
\\.
--
-- PostgreSQL database dump complete
--
"""
POSTGRES_TABLES = {"public.items": 4, '"Odd Schema"."a ""quoted"" (name)"': 1, "public.empty": 0, "public.never_copied": 0}

MYSQL_DUMP_ONE_LINE = b"""-- MySQL dump 10.13
CREATE TABLE `items` (
  `id` int NOT NULL
) ENGINE=InnoDB;
INSERT INTO `items` VALUES (1,'a),(b'),(2,'it\\'s \\\\'),(3,NULL);
INSERT INTO `items` VALUES (4,'x');
CREATE TABLE `back``tick` (`i` int);
CREATE TABLE `empty` (`i` int);
INSERT INTO `back``tick` VALUES (9);
-- Dump completed
"""
MYSQL_DUMP_ROW_PER_LINE = b"""-- MariaDB dump 10.19
CREATE TABLE `items` (
  `id` int NOT NULL
) ENGINE=InnoDB;
INSERT INTO `items` VALUES
(1,'a);'),
(2,'line\\nbreak'),
(3,'x');
CREATE TABLE `empty` (`i` int);
INSERT INTO `back``tick` VALUES
(9);
-- Dump completed
"""
MYSQL_TABLES = {"items": 4, "back`tick": 1, "empty": 0}


def read(reader_class, dump: bytes, size: int) -> dict:
    reader = reader_class()
    for start in range(0, len(dump), size):
        reader.feed(dump[start : start + size])
    return reader.tables


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_the_postgres_reader_counts_tables_and_copy_rows_whatever_the_chunk_boundaries(size):
    assert read(PostgresDumpReader, POSTGRES_DUMP, size) == POSTGRES_TABLES


@pytest.mark.parametrize("size", [7, 64, 1 << 20])
def test_the_postgres_reader_finds_the_end_of_rows_full_of_escapes(size):
    # More backslashes before the end marker than the reader tries one by one: its full search takes over.
    rows = b"".join(b"%d\t\\N\t\\\\.\n" % number for number in range(50))
    dump = b"CREATE TABLE public.nulls (i integer, a text, b text);\nCOPY public.nulls (i, a, b) FROM stdin;\n" + rows + b"\\.\n"
    dump += b"COPY public.after (i) FROM stdin;\n1\n\\.\n"
    assert read(PostgresDumpReader, dump, size) == {"public.nulls": 50, "public.after": 1}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 1 << 20])
@pytest.mark.parametrize("dump", [MYSQL_DUMP_ONE_LINE, MYSQL_DUMP_ROW_PER_LINE], ids=["mysql-one-line", "mariadb-row-per-line"])
def test_the_mysql_reader_counts_tables_and_inserted_rows_in_both_layouts_whatever_the_chunk_boundaries(dump, size):
    expected = MYSQL_TABLES if dump is MYSQL_DUMP_ONE_LINE else {"items": 3, "back`tick": 1, "empty": 0}
    assert read(MySQLDumpReader, dump, size) == expected


def test_a_dump_missing_a_table_or_the_rows_of_one_is_named():
    live = {"public.items": True, "public.tags": False, "public.notes": True}
    assert missing_from({"public.items": 0, "public.notes": 3}, live) == [
        "1 table(s) of the database are not in it: public.tags",
        "1 table(s) have rows in the database but none in it: public.items",
    ]
    assert missing_from({"public.items": 5, "public.tags": 0, "public.notes": 1, "public.extra": 0}, live) == []


def test_an_empty_dump_of_a_database_with_many_tables_lists_ten_and_counts_the_rest():
    live = {f"t{number:02}": False for number in range(25)}
    [problem] = missing_from({}, live)
    assert problem == "25 table(s) of the database are not in it: t00, t01, t02, t03, t04, t05, t06, t07, t08, t09 and 15 more"


def test_differences_from_the_recorded_contents_name_tables_and_counts():
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert differences({"a": 1, "c": 0}, {"a": 2, "b": 2}) == [
        "recorded table(s) missing: b",
        "table(s) not recorded: c",
        "row counts differ: a (1 rows, recorded 2)",
    ]
