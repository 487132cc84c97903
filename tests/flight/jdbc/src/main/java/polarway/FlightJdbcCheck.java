package polarway;

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.function.Function;

/**
 * Runs JDBC checks against a Polarway Flight SQL endpoint through the Arrow Flight SQL JDBC driver.
 *
 * <p>Usage: {@code FlightJdbcCheck URL table=NAME row=ID|BIG|NAME|SCORE... [denied=NAME]...}
 *
 * <p>The table must have the columns {@code id INT32, big INT64, name UTF8, score FLOAT64} and hold exactly
 * the given rows ({@code \N} is a null). A {@code denied} table must not be listed by {@code getTables} and
 * must not be readable. Prints one {@code ok}/{@code FAIL} line per check; exits 1 if any check failed and
 * 2 on a usage error.
 */
public final class FlightJdbcCheck {
    private static final String NULL = "\\N";
    private static final String[] COLUMNS = {"id", "big", "name", "score"};
    private static final int[] JDBC_TYPES = {Types.INTEGER, Types.BIGINT, Types.VARCHAR, Types.DOUBLE};

    /** One expected row; {@code name} may be null. */
    record Row(int id, long big, String name, double score) {
        static Row parse(String text) {
            String[] f = text.split("\\|", -1);
            if (f.length != 4) {
                throw new IllegalArgumentException("a row has 4 fields separated by '|': " + text);
            }
            return new Row(Integer.parseInt(f[0]), Long.parseLong(f[1]), NULL.equals(f[2]) ? null : f[2],
                    Double.parseDouble(f[3]));
        }

        static Row read(ResultSet rs) throws SQLException {
            return new Row(rs.getInt("id"), rs.getLong("big"), rs.getString("name"), rs.getDouble("score"));
        }
    }

    /** A failed expectation, reported as the check's message. */
    static final class Mismatch extends Exception {
        Mismatch(String message) {
            super(message);
        }
    }

    @FunctionalInterface
    interface Check {
        String run() throws Exception;
    }

    private final Connection conn;
    private final String table;
    private final List<Row> rows;
    private final List<String> denied;
    private int failures;

    private FlightJdbcCheck(Connection conn, String table, List<Row> rows, List<String> denied) {
        this.conn = conn;
        this.table = table;
        this.rows = rows;
        this.denied = denied;
    }

    public static void main(String[] args) {
        if (args.length < 1) {
            usage("no URL");
        }
        String url = args[0];
        String table = null;
        List<Row> rows = new ArrayList<>();
        List<String> denied = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (a.startsWith("table=")) {
                table = a.substring(6);
            } else if (a.startsWith("row=")) {
                rows.add(Row.parse(a.substring(4)));
            } else if (a.startsWith("denied=")) {
                denied.add(a.substring(7));
            } else {
                usage("unknown argument " + a);
            }
        }
        if (table == null || rows.isEmpty()) {
            usage("table= and at least one row= are required");
        }
        Connection conn;
        try {
            conn = DriverManager.getConnection(url);
            System.out.println("ok   connect");
        } catch (SQLException e) {
            System.out.println("FAIL connect: " + describe(e));
            System.exit(1);
            return;
        }
        int failures;
        try (conn) {
            FlightJdbcCheck c = new FlightJdbcCheck(conn, table, rows, denied);
            c.runAll();
            failures = c.failures;
        } catch (SQLException e) {
            System.out.println("FAIL close: " + describe(e));
            failures = 1;
        }
        System.out.println(failures == 0 ? "all checks passed" : failures + " check(s) failed");
        System.exit(failures == 0 ? 0 : 1);
    }

    private static void usage(String why) {
        System.err.println("usage: FlightJdbcCheck URL table=NAME row=ID|BIG|NAME|SCORE... [denied=NAME]... (" + why + ")");
        System.exit(2);
    }

    private void runAll() {
        check("executeQuery", this::executeQuery);
        check("resultSetMetaData", this::resultSetMetaData);
        check("getCatalogs", () -> expectListed(conn.getMetaData().getCatalogs(), "TABLE_CAT", "memory"));
        check("getSchemas", () -> expectListed(conn.getMetaData().getSchemas(), "TABLE_SCHEM", "main"));
        check("getTables", this::getTables);
        check("getColumns", this::getColumns);
        check("getTypeInfo", this::getTypeInfo);
        check("prepared setInt", () -> prepared("id", Row::id, (ps, v) -> ps.setInt(1, (Integer) v), Integer.MIN_VALUE));
        check("prepared setLong", () -> prepared("big", Row::big, (ps, v) -> ps.setLong(1, (Long) v), Long.MIN_VALUE));
        check("prepared setString", () -> prepared("name", Row::name, (ps, v) -> ps.setString(1, (String) v), "no such name"));
        for (String d : denied) {
            check("denied query " + d, () -> deniedQuery(d));
            check("denied getTables " + d, () -> deniedListing(d));
        }
    }

    private void check(String name, Check c) {
        try {
            System.out.println("ok   " + name + ": " + c.run());
        } catch (Mismatch m) {
            failures++;
            System.out.println("FAIL " + name + ": " + m.getMessage());
        } catch (Exception e) {
            failures++;
            System.out.println("FAIL " + name + ": " + describe(e));
        }
        System.out.flush();
    }

    /** The whole cause chain (the driver wraps the server's error several layers deep), with gRPC status codes. */
    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        Set<Throwable> seen = new HashSet<>();
        for (Throwable t = e; t != null && seen.add(t); t = t.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(t.getClass().getSimpleName()).append(statusCode(t)).append(": ")
                    .append(String.valueOf(t.getMessage()).replace('\n', ' '));
        }
        return sb.toString();
    }

    /** " [CODE]" for a Flight error: read reflectively, since the driver shades Flight under its own package. */
    private static String statusCode(Throwable t) {
        try {
            Object status = t.getClass().getMethod("status").invoke(t);
            return " [" + status.getClass().getMethod("code").invoke(status) + "]";
        } catch (ReflectiveOperationException | RuntimeException e) {
            return "";
        }
    }

    private String select() {
        return "SELECT id, big, name, score FROM " + table;
    }

    private static List<Row> readAll(ResultSet rs) throws SQLException {
        List<Row> out = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                out.add(Row.read(rs));
            }
        }
        return out;
    }

    private static void expectRows(List<Row> expected, List<Row> got) throws Mismatch {
        if (!expected.equals(got)) {
            throw new Mismatch("expected rows " + expected + " but got " + got);
        }
    }

    private String executeQuery() throws Exception {
        try (Statement st = conn.createStatement()) {
            List<Row> got = readAll(st.executeQuery(select() + " ORDER BY id"));
            expectRows(rows, got);
            // A null must read back as SQL NULL (wasNull), not as an empty string.
            try (ResultSet rs = st.executeQuery("SELECT name FROM " + table + " WHERE name IS NULL")) {
                long nulls = rows.stream().filter(r -> r.name() == null).count();
                for (long i = 0; i < nulls; i++) {
                    if (!rs.next() || rs.getString(1) != null || !rs.wasNull()) {
                        throw new Mismatch("null name " + (i + 1) + " of " + nulls + " did not read back as SQL NULL");
                    }
                }
                if (rs.next()) {
                    throw new Mismatch("more null names than the " + nulls + " stored");
                }
            }
            return got.size() + " rows match";
        }
    }

    private String resultSetMetaData() throws Exception {
        // On a non-empty result: for an empty one this driver reports every column twice (apache/arrow-java#44).
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(select())) {
            ResultSetMetaData md = rs.getMetaData();
            expectColumns(md.getColumnCount(), md::getColumnName, md::getColumnType);
            return "columns and types match";
        }
    }

    @FunctionalInterface
    interface ColumnInfo<T> {
        T get(int index) throws SQLException;
    }

    private static void expectColumns(int count, ColumnInfo<String> name, ColumnInfo<Integer> type) throws Exception {
        List<String> names = new ArrayList<>();
        List<Integer> types = new ArrayList<>();
        for (int i = 1; i <= count; i++) {
            names.add(name.get(i));
            types.add(type.get(i));
        }
        List<String> wantNames = List.of(COLUMNS);
        List<Integer> wantTypes = Arrays.stream(JDBC_TYPES).boxed().toList();
        if (!names.equals(wantNames) || !types.equals(wantTypes)) {
            throw new Mismatch("expected columns " + wantNames + " with java.sql.Types " + wantTypes + " but got " + names
                    + " with " + types);
        }
    }

    private static String expectListed(ResultSet rs, String column, String value) throws Exception {
        List<String> seen = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                seen.add(rs.getString(column));
            }
        }
        if (!seen.contains(value)) {
            throw new Mismatch(column + " " + seen + " does not contain " + value);
        }
        return seen.size() + " listed, including " + value;
    }

    /** The rows {@code getTables} lists as CAT.SCHEMA.NAME:TYPE. */
    private List<String> listTables() throws SQLException {
        List<String> out = new ArrayList<>();
        try (ResultSet rs = conn.getMetaData().getTables(null, null, "%", null)) {
            while (rs.next()) {
                out.add(rs.getString("TABLE_CAT") + "." + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME")
                        + ":" + rs.getString("TABLE_TYPE"));
            }
        }
        return out;
    }

    private String getTables() throws Exception {
        List<String> listed = listTables();
        String want = "memory.main." + table + ":TABLE";
        if (!listed.contains(want)) {
            throw new Mismatch("getTables(null, null, \"%\", null) does not list " + want + ": " + listed);
        }
        // The same table through an exact name pattern and a TABLE type filter.
        List<String> exact = new ArrayList<>();
        try (ResultSet rs = conn.getMetaData().getTables("memory", "main", table, new String[] {"TABLE"})) {
            while (rs.next()) {
                exact.add(rs.getString("TABLE_NAME"));
            }
        }
        if (!exact.equals(List.of(table))) {
            throw new Mismatch("getTables(\"memory\", \"main\", \"" + table + "\", {TABLE}) gave " + exact);
        }
        return listed.size() + " tables, including " + want;
    }

    private String getColumns() throws Exception {
        List<String> names = new ArrayList<>();
        List<Integer> types = new ArrayList<>();
        List<Integer> positions = new ArrayList<>();
        DatabaseMetaData md = conn.getMetaData();
        try (ResultSet rs = md.getColumns(null, null, table, "%")) {
            while (rs.next()) {
                if (!table.equals(rs.getString("TABLE_NAME"))) {
                    throw new Mismatch("getColumns for " + table + " returned a column of " + rs.getString("TABLE_NAME"));
                }
                names.add(rs.getString("COLUMN_NAME"));
                types.add(rs.getInt("DATA_TYPE"));
                positions.add(rs.getInt("ORDINAL_POSITION"));
            }
        }
        expectColumns(names.size(), i -> names.get(i - 1), i -> types.get(i - 1));
        if (!positions.equals(List.of(1, 2, 3, 4))) {
            throw new Mismatch("ORDINAL_POSITION " + positions + ", expected [1, 2, 3, 4]");
        }
        return "columns " + names + " with types " + types;
    }

    private String getTypeInfo() throws Exception {
        Set<Integer> types = new HashSet<>();
        List<String> names = new ArrayList<>();
        try (ResultSet rs = conn.getMetaData().getTypeInfo()) {
            ResultSetMetaData md = rs.getMetaData();
            if (md.getColumnCount() < 2 || !"TYPE_NAME".equals(md.getColumnName(1))
                    || !"DATA_TYPE".equals(md.getColumnName(2))) {
                throw new Mismatch("getTypeInfo does not start with TYPE_NAME, DATA_TYPE");
            }
            while (rs.next()) {
                names.add(rs.getString("TYPE_NAME"));
                types.add(rs.getInt("DATA_TYPE"));
            }
        }
        // This driver answers getTypeInfo itself, with no rows, without asking the server (it never sends
        // GetXdbcTypeInfo); rows, should a driver version return them, must name the basic types.
        if (names.isEmpty()) {
            return "0 types: the driver does not ask the server";
        }
        for (int t : new int[] {Types.INTEGER, Types.BIGINT, Types.VARCHAR}) {
            if (!types.contains(t)) {
                throw new Mismatch("no row with DATA_TYPE " + t + " among " + names + " / " + types);
            }
        }
        return names.size() + " types, including INTEGER, BIGINT and VARCHAR";
    }

    @FunctionalInterface
    interface Binder {
        void bind(PreparedStatement ps, Object value) throws SQLException;
    }

    /**
     * One prepared statement filtering on {@code column}, executed once per stored row and once with a value that
     * matches nothing: each execution must use the value bound last, not an earlier one.
     */
    private String prepared(String column, Function<Row, Object> key, Binder binder, Object miss) throws Exception {
        int runs = 0;
        try (PreparedStatement ps = conn.prepareStatement(select() + " WHERE " + column + " = ? ORDER BY id")) {
            List<Object> values = new ArrayList<>();
            rows.stream().map(key).filter(Objects::nonNull).forEach(values::add); // `= NULL` matches nothing
            values.add(miss);
            for (Object v : values) {
                binder.bind(ps, v);
                List<Row> want = rows.stream().filter(r -> v.equals(key.apply(r))).toList();
                List<Row> got = readAll(ps.executeQuery());
                if (!want.equals(got)) {
                    throw new Mismatch(column + " = " + v + ": expected " + want + " but got " + got);
                }
                runs++;
            }
        }
        return runs + " executions returned the matching rows";
    }

    private String deniedQuery(String name) throws Exception {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT * FROM " + name)) {
            int n = 0;
            while (rs.next()) {
                n++;
            }
            throw new Mismatch("SELECT * FROM " + name + " succeeded with " + n + " rows");
        } catch (SQLException e) {
            return "refused: " + describe(e);
        }
    }

    private String deniedListing(String name) throws Exception {
        List<String> listed = listTables();
        for (String t : listed) {
            if (t.contains("." + name + ":")) {
                throw new Mismatch("getTables lists " + t);
            }
        }
        return "not among " + listed.size() + " listed tables";
    }
}
